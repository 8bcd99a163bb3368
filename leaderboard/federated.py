"""The Federated page's data, from the store's `federated_curve` and `federated_results`
views (suite/store/federated.py): plain DataFrames and charts, no Streamlit.

One row per run setting (method x rule x split x DP x model x task): the last stored
round's test score (mean and spread over the seeds), the bytes communicated and the
wall time to get there; and the curves of every run, test score against rounds and
against bytes communicated (up and down together, cumulative).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from leaderboard.data import Reader

KEYS = ["method", "aggregation", "split_text", "dp_text", "model", "task"]
_SELECT = (
    "fed_run, method, aggregation, CASE WHEN alpha IS NULL THEN split "
    "ELSE split || '(' || CAST(alpha AS VARCHAR) || ')' END AS split_text, "
    "CASE WHEN dp IS NULL THEN 'no' ELSE CAST(dp AS VARCHAR) END AS dp_text, model, task, "
    "seed, metric"
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
        return pd.DataFrame(columns=["fed_run", *KEYS, "seed"])
    return reader.frame(
        f"SELECT {_SELECT}, rounds_done, rounds, complete, validation_score, test_score, "
        "bytes_total, wall_s_total, label_skew FROM federated_results "
        "ORDER BY task, model, method, aggregation, split_text, seed"
    )


def federated_curves(reader: Reader) -> pd.DataFrame:
    """Every stored round of every run (round 0: the initial adapter)."""
    return reader.frame(
        f"SELECT {_SELECT}, round, validation_score, test_score, bytes_up, bytes_down, "
        "bytes_total, wall_s_total FROM federated_curve ORDER BY fed_run, round"
    )


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
        mb=("bytes_total", lambda b: b.mean() / 1e6),
        wall_s=("wall_s_total", "mean"),
    ).reset_index()
    return out.sort_values("test", ascending=False, kind="stable").reset_index(drop=True)


def curve_chart(curves: pd.DataFrame, x: str, title: str) -> alt.Chart:
    """Test score against `x` (round, or MB communicated), one line per run."""
    data = curves.assign(mb=curves["bytes_total"] / 1e6)
    data["setting"] = data["method"] + " " + data["aggregation"] + " " + data["split_text"]
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", title=title),
            y=alt.Y("test_score:Q", title="Test score", scale=alt.Scale(zero=False)),
            color=alt.Color("setting:N", title="Method, rule, split"),
            detail="fed_run:N",
            tooltip=["setting", "model", "task", "seed", "round",
                     alt.Tooltip("test_score:Q", format=".4f"), alt.Tooltip("mb:Q", format=".2f")],
        )
        .properties(height=320)
    )  # fmt: skip
