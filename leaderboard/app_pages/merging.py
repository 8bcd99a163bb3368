"""Merging: adapters trained on different tasks merged into one update, scored on every
source task against each task's own adapter (normalised = merged / own), with the size
of what must be kept and the merge time."""

from __future__ import annotations

import streamlit as st

from leaderboard import charts, tables, ui
from leaderboard.posthoc import merging_problems, merging_rows, merging_summary

reader, rows = ui.table_page(
    "Merging", merging_rows, "No merges yet: a matrix's `posthoc:` section declares merge stages."
)
st.caption(
    "Each merge is scored on every source task with that task's own head; normalised is the "
    "merged model's primary test metric divided by the task's own adapter's (rebuilt from its "
    "stored artifact), averaged over seeds. Stored is what must be kept besides the base "
    "model: one merged update (RMM: a basis and per-task coefficients), task heads apart."
)
summary, tasks = merging_summary(rows)
st.dataframe(tables.merging_table(summary, tasks).styled(), hide_index=True, width="stretch")
if (rows["status"] == "ok").any():
    st.altair_chart(charts.merging_chart(rows), width="stretch")
problems = merging_problems(rows)
if not problems.empty:
    st.subheader("Merges that did not run")
    st.caption("Refused inputs are never retrained: the input cell must be run again.")
    st.dataframe(problems, hide_index=True, width="stretch")
