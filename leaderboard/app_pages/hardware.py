"""Hardware: recorded profiles, which results ran on each, results filtered by profile."""

from __future__ import annotations

import streamlit as st

from leaderboard import tables, ui
from leaderboard.hardware import phases_on, profiles, recorded, results_on

reader, table = ui.table_page("Hardware profiles", profiles, "No results yet.")
st.caption(
    "Each profile names the resources a cell asked for; Hardware is what the runs recorded. "
    "Costs (memory, time, latency) compare only within one profile."
)
st.dataframe(tables.profiles_table(table).styled(), hide_index=True, width="stretch")
machines = ui.guarded(recorded, reader)
if not machines.empty:
    st.subheader("Recorded hardware")
    st.caption(
        "What the workers measured: device, memory, CPU, versions, calibrated speed (the "
        "median where several identical machines recorded it, listed once with their count)."
    )
    st.dataframe(tables.machines_table(machines).styled(), hide_index=True, width="stretch")
st.subheader("Results by profile")
profile = st.selectbox("Results measured on", table["profile"].tolist(), key="hw_profile")
rows = ui.guarded(results_on, reader, profile)
st.dataframe(tables.results_on_table(rows).styled(), hide_index=True, width="stretch")
phases = ui.guarded(phases_on, reader, profile)
st.subheader("Where the time goes")
if phases.empty:
    st.info("No cell on this profile recorded its phases (rows written before they were).")
else:
    st.caption(
        "Mean seconds per phase of a cell, from Ray's dispatch to the stored row; the phases "
        "add up to Total. Scheduling share: dispatch, worker and storing, of Total. Cached: "
        "the share of cells whose model and tokenised data came from the worker's caches."
    )
    st.dataframe(tables.phases_table(phases).styled(), hide_index=True, width="stretch")
