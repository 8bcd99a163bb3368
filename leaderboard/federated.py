"""The Federated page's data, from the store's `federated_curve` and `federated_results`
views (suite/store/federated.py): plain DataFrames and charts, no Streamlit.

One row per run setting (method x rule x split x DP x model x task): the last stored
round's test score (mean and spread over the seeds) beside the task's majority class, the
bytes communicated and the wall time to get there; and the curves of every run, test
score against rounds and against bytes communicated (up and down together, cumulative),
the majority class a dashed line.
"""

from __future__ import annotations

import json

import altair as alt
import pandas as pd

from leaderboard.catalog import with_names
from leaderboard.data import Reader
from leaderboard.tables import Table, joined_origins, source_labels

# `name`: the method as its paper writes it (one per label: a key in name only).
KEYS = ["method", "name", "aggregation", "split_text", "dp_text", "model", "task"]
_SELECT = (
    "fed_run, method, matrix, aggregation, CASE WHEN alpha IS NULL THEN upper(split) "
    "ELSE 'Dirichlet, alpha ' || CAST(alpha AS VARCHAR) END AS split_text, "
    "CAST(dp AS VARCHAR) AS dp_text, model, task, seed, metric"
)


def dp_words(value: str | None) -> str:
    """A run's `dp` (JSON, or NULL) in words: 'none' or 'clip C, noise z'."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "none"
    dp = json.loads(value)
    return f"clip {dp['max_grad_norm']:g}, noise {dp['noise_multiplier']:g}"


def _worded(frame: pd.DataFrame) -> pd.DataFrame:
    return with_names(frame).assign(dp_text=frame["dp_text"].map(dp_words))


def _per_run(reader: Reader) -> str:
    """SQL for what a run stores once: its label skew (round 0) and its majority-class
    test score (NULL in stores older than it)."""
    found = reader.has_column("federated_rounds", "baseline_test_score")
    majority = "max(baseline_test_score)" if found else "NULL::DOUBLE"
    return (
        f"(SELECT fed_run, {majority} AS majority, max(label_skew) AS run_label_skew "
        "FROM federated_rounds WHERE status = 'ok' GROUP BY fed_run)"
    )


def has_federated(reader: Reader) -> bool:
    """Whether this database has the federated views (older ones do not)."""
    found = reader.frame(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'federated_results'"
    )
    return int(found["n"].iloc[0]) == 1


def federated_runs(reader: Reader) -> pd.DataFrame:
    """Every run's last stored round."""
    if not has_federated(reader):
        return pd.DataFrame(columns=["fed_run", *KEYS, "seed", "origin"])
    # The published dataset the shown (last) round came from.
    origin = "origin" if reader.has_column("federated_results", "origin") else "NULL::VARCHAR"
    frame = reader.frame(
        f"SELECT {_SELECT}, rounds_done, rounds, complete, validation_score, test_score, "
        f"bytes_total, wall_s_total, run_label_skew AS label_skew, majority, {origin} AS origin "
        f"FROM federated_results LEFT JOIN {_per_run(reader)} USING (fed_run) "
        "ORDER BY task, model, method, aggregation, split_text, seed"
    )
    return _worded(frame)


def federated_curves(reader: Reader) -> pd.DataFrame:
    """Every stored round of every run (round 0: the initial adapter)."""
    frame = reader.frame(
        f"SELECT {_SELECT}, round, validation_score, test_score, bytes_up, bytes_down, "
        f"bytes_total, wall_s_total, majority FROM federated_curve "
        f"LEFT JOIN {_per_run(reader)} USING (fed_run) ORDER BY fed_run, round"
    )
    return _worded(frame)


def federated_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each setting's last round, best first."""
    grouped = runs.groupby(KEYS, sort=False)
    out = grouped.agg(
        seeds=("seed", "count"),
        rounds_done=("rounds_done", "min"),
        rounds=("rounds", "max"),
        test=("test_score", "mean"),
        test_sd=("test_score", "std"),
        validation=("validation_score", "mean"),
        majority=("majority", "max"),
        metric=("metric", "first"),
        label_skew=("label_skew", "mean"),
        bytes_total=("bytes_total", "mean"),
        wall_s=("wall_s_total", "mean"),
        origin=("origin", joined_origins),
    ).reset_index()
    return out.sort_values("test", ascending=False, kind="stable").reset_index(drop=True)


def summary_table(summary: pd.DataFrame) -> Table:
    """The page's table: words for the column names, each column's kind of number."""
    summary = summary.assign(source=source_labels(summary))
    columns = {
        "Method": ("name", "text"), "Source": ("source", "text"),
        "Aggregation": ("aggregation", "text"),
        "Client split": ("split_text", "text"), "Differential privacy": ("dp_text", "text"),
        "Model": ("model", "text"), "Task": ("task", "text"), "Metric": ("metric", "text"),
        "Seeds": ("seeds", "text"), "Rounds done": ("rounds_done", "text"),
        "Rounds planned": ("rounds", "text"), "Test score": ("test", "score"),
        "Test, std over seeds": ("test_sd", "score"), "Majority class (test)": ("majority", "score"),
        "Validation score": ("validation", "score"), "Label skew": ("label_skew", "score"),
        "Communicated (up + down)": ("bytes_total", "bytes"), "Wall time": ("wall_s", "duration"),
    }  # fmt: skip
    frame = pd.DataFrame({label: summary[col] for label, (col, _) in columns.items()})
    return Table(frame.reset_index(drop=True), {label: k for label, (_, k) in columns.items()})


def _x_axis(x: str) -> alt.Axis:
    """Rounds are whole numbers: no ticks between them."""
    return alt.Axis(tickMinStep=1, format="d") if x == "round" else alt.Axis()


def curve_chart(curves: pd.DataFrame, x: str, title: str) -> alt.LayerChart | alt.Chart:
    """Test score against `x` (round, or MiB communicated), one line per run; the
    majority class a dashed line."""
    data = curves.assign(mb=curves["bytes_total"] / 2**20)
    data["setting"] = data["name"] + ", " + data["aggregation"] + ", " + data["split_text"]
    data.loc[data["dp_text"] != "none", "setting"] += ", DP " + data["dp_text"]
    metric = str(data["metric"].iloc[0]).replace("_", " ") if len(data) else "score"
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", title=title, axis=_x_axis(x)),
            y=alt.Y("test_score:Q", title=f"Test {metric}", scale=alt.Scale(zero=False)),
            color=alt.Color("setting:N", title="Method, aggregation, client split",
                            legend=alt.Legend(orient="bottom", labelLimit=0, titleLimit=0)),
            detail="fed_run:N",
            tooltip=[alt.Tooltip("setting", title="Setting"), alt.Tooltip("model", title="Model"),
                     alt.Tooltip("task", title="Task"), alt.Tooltip("seed", title="Seed"),
                     alt.Tooltip("round", title="Round"),
                     alt.Tooltip("test_score:Q", title=f"Test {metric}", format=".4f"),
                     alt.Tooltip("mb:Q", title="MiB communicated", format=".2f")],
        )
        .properties(height=320)
    )  # fmt: skip
    level = data[["task", "majority"]].dropna().drop_duplicates()
    if level.empty:
        return lines
    level["text"] = [
        f"majority class, {t}: {v:.3f}"
        for t, v in zip(level["task"], level["majority"], strict=True)
    ]
    rule = alt.Chart(level).mark_rule(strokeDash=[6, 4], color="gray").encode(
        y="majority:Q",
        tooltip=[alt.Tooltip("majority:Q", title="Majority class (test)", format=".4f")],
    )  # fmt: skip
    text = alt.Chart(level).mark_text(align="left", dy=-6, color="gray")
    text = text.encode(y="majority:Q", text="text:N")
    return alt.layer(lines, rule, text)
