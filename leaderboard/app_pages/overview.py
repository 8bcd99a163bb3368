"""Overview: one row per method for a task and model, or the aggregate over all tasks."""

from __future__ import annotations

import streamlit as st

from leaderboard import charts, tables, ui
from leaderboard.catalog import written_names
from leaderboard.pagedata import (
    ALL_TASKS,
    Filters,
    all_tasks_rows,
    leaderboard_rows,
    primary_metric,
    reference_rows,
)


def _download(frame, name: str) -> None:
    st.download_button(
        "Download CSV (raw units: bytes, seconds)",
        frame.to_csv(index=False).encode(),
        file_name=name,
        mime="text/csv",
    )


def _all_tasks(r, filters: Filters) -> None:
    st.title("Overview: all tasks")
    rows = ui.guarded(all_tasks_rows, r, filters)
    st.caption(
        f"Protocol **{ui.protocol_words(r, filters.protocol)}**. Mean of each method's primary score over the tasks "
        "it ran, and its mean rank (1 = best within a task). Tasks use different metrics: "
        "compare ranks first."
    )
    st.dataframe(tables.aggregate_table(rows).styled(), hide_index=True, width="stretch")
    _download(rows, f"peftbench-all-tasks-{filters.model}.csv")


def _one_task(r, filters: Filters) -> None:
    metric = ui.guarded(primary_metric, r, filters.task)
    rows = ui.guarded(leaderboard_rows, r, filters)
    st.title(f"Overview: {filters.task} on {filters.model}")
    if rows.empty:
        st.info("No successful results for this selection.")
        return
    baseline = rows["baseline_value"].dropna()
    note = (
        f"Protocol **{ui.protocol_words(r, filters.protocol)}**. Primary metric: **{metric.label}**; mean over seeds, with a 95% bootstrap interval "
        "over the test examples (and over seeds, where there are 3 or more; with fewer, "
        "the interval is over examples only: *Interval over*)."
    )
    if len(baseline):
        note += f" Majority/mean baseline on test: **{baseline.max():.4f}** (dashed line)."
    compared = rows.dropna(subset=["baseline_method"])
    base_methods = sorted(set(written_names(compared, "baseline_method")))
    if base_methods:
        note += (
            f" *vs baseline method*: against **{', '.join(base_methods)}** on the same test "
            "examples (and seeds), Holm-corrected over the methods here (p < 0.05): for "
            "accuracies the exact sign-flip test on each example's difference summed over "
            "seeds (McNemar's exact test at one seed), else the paired bootstrap (*Holm "
            "over* says which); the seed-level paired t-test and its number of pairs stay "
            "beside it."
        )
    st.markdown(note)
    if rows["stale"].fillna(False).any():
        st.warning(
            "Some rows use an older metric or method version (Stale = true); do not "
            "compare them with current rows."
        )
    if rows["fidelity"].eq("reconstructed").any():
        st.caption(
            "⚠ reconstructed: the method's code and full text could not be read; its "
            "implementation is the project's reading of the abstract (docs/fidelity.md)."
        )
    st.altair_chart(charts.overview_chart(rows, metric), width="stretch")
    st.dataframe(tables.overview_table(rows, metric).styled(), hide_index=True, width="stretch")
    # The download keeps the view's raw columns (bytes, seconds) for scripts.
    _download(rows, f"peftbench-{filters.task}-{filters.model}.csv")
    _references(r, rows)


def _references(r, rows) -> None:
    """Papers' numbers for this task type, below the measured table and apart from it."""
    types = sorted(rows["task_type"].dropna().unique()) if "task_type" in rows else []
    refs = ui.guarded(reference_rows, r, types)
    if refs.empty:
        return
    st.subheader("Reported in papers, not measured here")
    st.caption(
        "Copied from the papers' tables (each row cites its table) on the papers' own data, "
        "models and token budgets: not comparable with the measured rows above, never "
        "ranked with them."
    )
    st.dataframe(tables.reference_table(refs), hide_index=True, width="stretch")


reader, filters = ui.page_setup()
if filters is None:
    st.stop()
if filters.task == ALL_TASKS:
    _all_tasks(reader, filters)
else:
    _one_task(reader, filters)
