"""The Continual page's data, from the store's `continual_results` and `continual_matrix`
views (suite/store/continual.py): plain DataFrames, no Streamlit.

One row per method x strategy x model x sequence: GEM's ACC, BWT and FWT (mean and spread
over the seeds stored ok), the adapter parameters it keeps, its training time; and the
accuracy matrix of one cell (stage x task; stage 0 is the baseline before training).
"""

from __future__ import annotations

import pandas as pd

from leaderboard.data import Reader

_KEYS = ["method", "strategy", "model", "sequence_text"]


def has_continual(reader: Reader) -> bool:
    """Whether this database has the continual views (older ones do not)."""
    found = reader.frame(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'continual_results'"
    )
    return int(found["n"].iloc[0]) == 1


def continual_rows(reader: Reader) -> pd.DataFrame:
    """Every continual cell's latest attempt (failed ones too)."""
    if not has_continual(reader):
        return pd.DataFrame(columns=["cell_id", *_KEYS, "seed", "status"])
    return reader.frame(
        "SELECT cell_id, method, strategy, model, array_to_string(sequence, ' -> ') AS "
        "sequence_text, seed, status, error, avg_accuracy, bwt, fwt, trainable_params, "
        "train_wall_s, fidelity, protocol FROM continual_results "
        "ORDER BY method, strategy, model, seed"
    )


def continual_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds stored ok, best final average accuracy first."""
    ok = rows[rows["status"] == "ok"]
    grouped = ok.groupby(_KEYS, sort=False)
    out = grouped.agg(
        seeds=("seed", "count"),
        acc=("avg_accuracy", "mean"),
        acc_sd=("avg_accuracy", "std"),
        bwt=("bwt", "mean"),
        bwt_sd=("bwt", "std"),
        fwt=("fwt", "mean"),
        trainable_params=("trainable_params", "max"),
        train_wall_s=("train_wall_s", "mean"),
    ).reset_index()
    failed = rows[rows["status"] != "ok"].groupby(_KEYS).size().rename("not_ok").reset_index()
    out = out.merge(failed, on=_KEYS, how="left").fillna({"not_ok": 0})
    return out.sort_values("acc", ascending=False, kind="stable").reset_index(drop=True)


def accuracy_matrix(reader: Reader, cell_id: str) -> pd.DataFrame:
    """The cell's matrix: one row per stage ('before training', 'after <task>'), one
    column per task of the sequence, in its order."""
    frame = reader.frame(
        "SELECT stage, trained, position, task, value FROM continual_matrix WHERE cell_id = ? "
        "ORDER BY stage, position",
        [cell_id],
    )
    if frame.empty:
        return frame
    frame["after"] = [
        f"{s}. after {t}" if s else "0. before training"
        for s, t in zip(frame["stage"], frame["trained"], strict=True)
    ]
    order = list(dict.fromkeys(frame["task"]))
    table = frame.pivot(index="after", columns="task", values="value")[order]
    return table.reset_index().rename(columns={"after": "Stage"})
