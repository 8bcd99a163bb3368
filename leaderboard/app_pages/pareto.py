"""Pareto: quality against a chosen cost, the Pareto-optimal methods joined and marked."""

from __future__ import annotations

import streamlit as st

from leaderboard import charts, tables, ui
from leaderboard.pagedata import COST_AXES, COST_KINDS, pareto_data, primary_metric

reader, filters = ui.page_setup()
if filters is None:
    st.stop()
available = ui.scoped_choices(reader, filters)
filters = ui.need_single_task(filters, sorted(available["task"].unique()))
filters = ui.need_single_profile(filters, available)
st.title(f"Pareto: {filters.task} on {filters.model} ({filters.profile})")
st.caption(
    f"Protocol **{ui.protocol_words(reader, filters.protocol)}**: one front per protocol and "
    "hardware profile."
)
axis = st.radio(
    "Cost axis",
    list(COST_AXES),
    format_func=lambda a: COST_AXES[a][0],
    horizontal=True,
    key="cost_axis",
)
metric = ui.guarded(primary_metric, reader, filters.task)
points = ui.guarded(pareto_data, reader, filters, axis)
if points.empty:
    st.info("No successful results with this cost measured for this selection.")
    st.stop()
st.caption(
    "Diamonds joined by the red line are Pareto-optimal (no other method is at least as good "
    "and at most as costly), and only they are named. Bars: 95% bootstrap interval (over "
    "examples, and seeds where there are 3 or more). Dashed line: the majority/mean baseline. "
    "Hover a point for its method, hyperparameters and cell ids. P(on front): the share of "
    "bootstrap replicates of quality (over test examples and seeds, costs at their medians) in which "
    "the method is on the front; every method's replicate is scored on the same drawn "
    "examples, so a method no better and dearer than another is never on it."
)
st.altair_chart(charts.pareto_chart(points, axis, metric), width="stretch")
st.dataframe(
    tables.pareto_table(points, COST_AXES[axis][0], COST_KINDS[axis]).styled(),
    hide_index=True,
    width="stretch",
)
