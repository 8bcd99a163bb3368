"""Display tables: view columns renamed and converted to readable units (one place, so the
app, its CSV download and the static report agree)."""

from __future__ import annotations

import pandas as pd

from leaderboard.pagedata import Metric

MIB = 2.0**20


def _ms(seconds: pd.Series) -> pd.Series:
    return seconds * 1000.0


def overview_table(rows: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """One row per method (and profile): score with CI, seeds, and every cost."""
    score = f"{metric.display}{f' ({metric.unit})' if metric.unit else ''}"
    out = pd.DataFrame(
        {
            "Rank": rows["rank"],
            "Method": rows["method"],
            "Fidelity": fidelity_labels(rows),
            "Family": rows["family"],
            "Profile": rows["profile"],
            score: rows["mean"],
            "CI low (95%)": rows["ci_low"],
            "CI high (95%)": rows["ci_high"],
            "Seeds": rows["n_seeds"],
            "Failed": rows["n_failed"],
            "vs baseline method": rows["vs_baseline"],
            "p": rows["p_value"],
            "Trainable params": rows["trainable_params"].round(),
            "Trainable %": rows["trainable_pct"],
            "Peak memory (MiB)": rows["peak_memory_bytes"] / MIB,
            "Train time (s)": rows["train_wall_s"],
            "Tokens/s": rows["tokens_per_s"] if "tokens_per_s" in rows else None,
            "Latency unmerged (ms)": _ms(rows["latency_unmerged_s"]),
            "Latency merged (ms)": _ms(rows["latency_merged_s"]),
            "Adapter (KiB)": rows["adapter_bytes"] / 1024.0,
            "Stale": rows["stale"],
        }
    )
    return out.reset_index(drop=True)


def reference_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Numbers reported in papers, each with its source (never ranked with measured rows)."""
    return pd.DataFrame(
        {
            "Method (paper's name)": rows["method"],
            "peftbench method": rows["method_key"].fillna("–"),
            "Model": rows["model"],
            "Training tokens": rows["tokens"],
            f"{rows['metric'].iloc[0] if len(rows) else 'Value'}": rows["value"],
            "Data set": rows["dataset"],
            "Source": rows["paper"] + " (arXiv " + rows["arxiv"] + "), " + rows["table_ref"],
            "Provenance": rows["provenance"],
        }
    ).reset_index(drop=True)


def fidelity_labels(rows: pd.DataFrame) -> pd.Series:
    """`reference`, `paper`, or `reconstructed ⚠` (the method is the project's reading of
    an abstract or summary: docs/fidelity.md), with the method version where above 1."""
    if "fidelity" not in rows:
        return pd.Series(["–"] * len(rows), index=rows.index)
    labels = (
        rows["fidelity"].fillna("–").map(lambda f: "reconstructed ⚠" if f == "reconstructed" else f)
    )
    if "method_version" in rows:
        version = rows["method_version"].fillna(1).astype(int)
        labels = labels + version.map(lambda v: f" (v{v})" if v > 1 else "")
    return labels


def aggregate_table(rows: pd.DataFrame) -> pd.DataFrame:
    """All tasks: mean score and mean rank per method across tasks."""
    return pd.DataFrame(
        {
            "Method": rows["method"],
            "Fidelity": fidelity_labels(rows),
            "Family": rows["family"],
            "Profile": rows["profile"],
            "Tasks": rows["n_tasks"],
            "Mean score": rows["mean_score"],
            "Mean rank": rows["mean_rank"],
            "Better than baseline method": rows["n_better"],
            "Worse than baseline method": rows["n_worse"],
        }
    ).reset_index(drop=True)


def pareto_table(points: pd.DataFrame, unit_label: str) -> pd.DataFrame:
    """The Pareto page's points, front first."""
    out = pd.DataFrame(
        {
            "Pareto-optimal": points["on_front"],
            "Method": points["method"],
            "Profile": points["profile"],
            "Mean": points["mean"],
            "CI low": points["ci_low"],
            "CI high": points["ci_high"],
            "Seeds": points["n_seeds"],
            unit_label: points["cost_display"],
            "Cell ids": points["cell_ids_text"],
        }
    )
    return out.sort_values(["Pareto-optimal", "Mean"], ascending=False).reset_index(drop=True)
