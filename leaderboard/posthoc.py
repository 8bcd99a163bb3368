"""The Merging and Compression pages' data, from the store's `merging` and `compression`
views (suite/store/posthoc.py): plain DataFrames, no Streamlit.

Merging: one row per merge (stage, method label, model, inputs), its normalised primary
test metric on each source task (merged / that task's own adapter, rebuilt from its
artifact), mean and spread over seeds, what must be stored and how long the merge took.
Compression: one row per compression of one source cell, the source task's primary test
metric at the method's sparsity beside the dense model's, and the latencies of both.
"""

from __future__ import annotations

import pandas as pd

from leaderboard.catalog import posthoc_names
from leaderboard.data import Reader

_EMPTY_MERGING = ["stage_name", "method", "model", "status", "task", "normalised"]


def has_posthoc(reader: Reader) -> bool:
    """Whether this database has the post-hoc views (older ones do not)."""
    found = reader.frame(
        "SELECT count(*) AS n FROM information_schema.tables "
        "WHERE table_name IN ('merging', 'compression')"
    )
    return int(found["n"].iloc[0]) == 2


def merging_rows(reader: Reader) -> pd.DataFrame:
    """Every merge cell's row per source task (failed and refused cells too)."""
    if not has_posthoc(reader):
        return pd.DataFrame(columns=_EMPTY_MERGING)
    return reader.frame("SELECT * FROM merging ORDER BY stage_name, method, model, seed, task")


def merging_summary(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per (stage, method, model, inputs): mean normalised score per task over
    its ok seeds, the mean over tasks, stored size and merge time; and the task names."""
    if rows.empty:
        return pd.DataFrame(), []
    rows = rows.assign(inputs=rows["input_methods"].map(_inputs_text))
    key = ["stage_name", "method", "method_name", "fidelity", "model", "inputs"]
    ok = rows[rows["status"] == "ok"]
    tasks = sorted(ok["task"].dropna().unique())
    per_cell = rows.drop_duplicates("cell_id")
    out = per_cell.groupby(key, dropna=False).agg(
        seeds=("seed", lambda s: int(s[per_cell.loc[s.index, "status"] == "ok"].nunique())),
        failed=("status", lambda s: int((s != "ok").sum())),
    )
    if not ok.empty:
        norm = ok.pivot_table(index=key, columns="task", values="normalised", aggfunc="mean")
        spread = ok.pivot_table(index=key, columns="task", values="normalised", aggfunc="std")
        merged = ok.pivot_table(index=key, columns="task", values="merged_value", aggfunc="mean")
        own = ok.pivot_table(index=key, columns="task", values="own_value", aggfunc="mean")
        for task in tasks:
            out[f"norm:{task}"] = norm.get(task)
            out[f"std:{task}"] = spread.get(task)
            out[f"merged:{task}"] = merged.get(task)
            out[f"own:{task}"] = own.get(task)
        out["norm_mean"] = norm[tasks].mean(axis=1)
        costs = (
            ok.drop_duplicates("cell_id")
            .groupby(key, dropna=False)
            .agg(
                stored_bytes=("stored_bytes", "median"),
                heads_bytes=("heads_bytes", "median"),
                merge_time_s=("merge_time_s", "median"),
            )
        )
        out = out.join(costs)
    out = out.reset_index()
    out["name"] = posthoc_names(out["method"], out["method_name"])
    if "norm_mean" in out:
        out = out.sort_values("norm_mean", ascending=False, na_position="last")
    return out.reset_index(drop=True), tasks


def merging_problems(rows: pd.DataFrame) -> pd.DataFrame:
    """Merge cells whose latest attempt is not ok, with the reason."""
    if rows.empty:
        return rows
    bad = rows[rows["status"] != "ok"].drop_duplicates("cell_id")
    columns = {"stage_name": "Stage", "method": "Merge", "model": "Model", "seed": "Seed",
               "status": "Status", "error": "Reason"}  # fmt: skip
    return bad[list(columns)].rename(columns=columns).reset_index(drop=True)


def _inputs_text(methods) -> str:
    if methods is None or not len(methods):
        return ""
    return ", ".join(dict.fromkeys(str(m) for m in methods))


def compression_sources(reader: Reader) -> pd.DataFrame:
    """(task, model, source method, seed) of the stored compressions, for the selector."""
    if not has_posthoc(reader):
        return pd.DataFrame(columns=["task", "model", "source_method", "seed", "n"])
    return reader.frame(
        "SELECT task, model, source_method, seed, count(*) AS n FROM compression "
        "WHERE status = 'ok' GROUP BY ALL ORDER BY task, model, source_method, seed"
    )


def compression_rows(
    reader: Reader, task: str, model: str, source_method: str, seed: int
) -> pd.DataFrame:
    """The ok compressions of one source cell, with each method's series name (an N:M
    pattern is a series of its own: it is a different constraint at the same sparsity)."""
    rows = reader.frame(
        "SELECT * FROM compression WHERE status = 'ok' AND task = ? AND model = ? "
        "AND source_method = ? AND seed = ? ORDER BY method_name, sparsity",
        [task, model, source_method, int(seed)],
    )
    if rows.empty:
        return rows
    pattern = rows["level_label"].fillna("").str.contains(":")
    # A method's series is named as its paper writes it (its label is a level's).
    written = posthoc_names(rows["method_name"], rows["method_name"])
    series = written.where(~pattern, written + " " + rows["level_label"])
    speedup = rows["dense_latency_s"] / rows["latency_s"]
    return rows.assign(series=series, speedup=speedup, name=written)


def compression_problems(reader: Reader) -> pd.DataFrame:
    """Compress cells whose latest attempt is not ok, with the reason."""
    if not has_posthoc(reader):
        return pd.DataFrame()
    return reader.frame(
        "SELECT stage_name AS Stage, method AS Method, model AS Model, seed AS Seed, "
        "status AS Status, error AS Reason FROM compression "
        "WHERE status <> 'ok' ORDER BY stage_name, method"
    )
