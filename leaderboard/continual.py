"""The Continual page's data, from the store's `continual_results` and `continual_matrix`
views (suite/store/continual.py): plain DataFrames, no Streamlit.

One row per method x strategy x model x sequence: GEM's ACC, BWT and FWT (mean and spread
over the seeds stored ok) beside the majority class's ACC, the adapter parameters it
keeps, its training time; and the accuracy matrix of one cell (stage x task; stage 0 is
the baseline before training; a last row the majority class on each task).
"""

from __future__ import annotations

import pandas as pd

from leaderboard.catalog import with_names
from leaderboard.data import Reader
from leaderboard.tables import Table, joined_origins, source_labels

MAJORITY_ROW = "majority class"

# `name`: the method as its paper writes it (one per label: a key in name only).
_KEYS = ["method", "name", "strategy", "model", "sequence_text"]


def has_continual(reader: Reader) -> bool:
    """Whether this database has the continual views (older ones do not)."""
    found = reader.frame(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'continual_results'"
    )
    return int(found["n"].iloc[0]) == 1


def continual_rows(reader: Reader) -> pd.DataFrame:
    """Every continual cell's latest attempt (failed ones too)."""
    if not has_continual(reader):
        return pd.DataFrame(columns=["cell_id", *_KEYS, "seed", "status", "origin"])
    origin = "origin" if reader.has_column("continual_results", "origin") else "NULL::VARCHAR"
    rows = reader.frame(
        "SELECT cell_id, method, matrix, strategy, model, array_to_string(sequence, ' -> ') "
        "AS sequence_text, seed, status, error, avg_accuracy, bwt, fwt, trainable_params, "
        f"train_wall_s, fidelity, protocol, {_trivial_acc(reader)} AS majority_acc, "
        f"{origin} AS origin FROM continual_results ORDER BY method, strategy, model, seed"
    )
    return with_names(rows)


def _trivial_acc(reader: Reader) -> str:
    """SQL for the mean of the tasks' trivial scores (NULL in stores older than them)."""
    found = reader.has_column("continual_runs", "task_baselines")
    return "list_avg(task_baselines)" if found else "NULL::DOUBLE"


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
        majority_acc=("majority_acc", "mean"),
        trainable_params=("trainable_params", "max"),
        train_wall_s=("train_wall_s", "mean"),
        origin=("origin", joined_origins),
    ).reset_index()
    failed = rows[rows["status"] != "ok"].groupby(_KEYS).size().rename("not_ok").reset_index()
    out = out.merge(failed, on=_KEYS, how="left").fillna({"not_ok": 0})
    return out.sort_values("acc", ascending=False, kind="stable").reset_index(drop=True)


def summary_table(summary: pd.DataFrame) -> Table:
    """The page's table: words for the column names, each column's kind of number."""
    summary = summary.assign(source=source_labels(summary))
    columns = {
        "Method": ("name", "text"), "Source": ("source", "text"),
        "Strategy": ("strategy", "text"), "Model": ("model", "text"),
        "Sequence": ("sequence_text", "text"), "Seeds ok": ("seeds", "text"),
        "Not ok": ("not_ok", "text"), "Average accuracy (ACC)": ("acc", "score"),
        "ACC, std over seeds": ("acc_sd", "score"), "ACC of the majority class": ("majority_acc", "score"),
        "Backward transfer (BWT)": ("bwt", "score"), "BWT, std over seeds": ("bwt_sd", "score"),
        "Forward transfer (FWT)": ("fwt", "score"),
        "Trainable params": ("trainable_params", "count"), "Train time": ("train_wall_s", "duration"),
    }  # fmt: skip
    frame = pd.DataFrame({label: summary[col] for label, (col, _) in columns.items()})
    return Table(frame.reset_index(drop=True), {label: k for label, (_, k) in columns.items()})


def problems_table(rows: pd.DataFrame) -> Table:
    """The cells not stored ok, with why."""
    words = {"name": "Method", "strategy": "Strategy", "model": "Model", "seed": "Seed",
             "status": "Status", "error": "Error"}  # fmt: skip
    bad = rows[rows["status"] != "ok"]
    return Table(bad[list(words)].rename(columns=words).reset_index(drop=True))


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
    table = table.reset_index().rename(columns={"after": "Stage"})
    trivial = _cell_trivial(reader, cell_id)
    if trivial:
        table.loc[len(table)] = [MAJORITY_ROW, *trivial]
    return table


def _cell_trivial(reader: Reader, cell_id: str) -> list[float | None]:
    """The cell's task_baselines (none in stores older than them)."""
    if _trivial_acc(reader).startswith("NULL"):
        return []
    found = reader.frame(
        "SELECT task_baselines FROM continual_results WHERE cell_id = ?", [cell_id]
    )
    value = found["task_baselines"].iloc[0] if len(found) else None
    return [] if value is None else list(value)
