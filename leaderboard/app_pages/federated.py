"""Federated: methods trained as simulated clients and a server, round by round; the
global adapter's test score against rounds and against bytes communicated."""

from __future__ import annotations

import streamlit as st

from leaderboard import ui
from leaderboard.federated import curve_chart, federated_curves, federated_runs, federated_summary

reader, runs = ui.table_page(
    "Federated",
    federated_runs,
    "No federated runs yet: a matrix's `federated:` section declares clients, rounds, "
    "splits and aggregation rules (suite/matrices/federated.yaml).",
)
st.caption(
    "Each run: N clients holding a split of the task's training set (iid, or Dirichlet(alpha) "
    "label skew), R rounds of local steps from the global adapter, then the server's rule "
    "(fedavg: the mean of every tensor; fedsvd: clients train B only, the server re-factorises "
    "B A by SVD). Scores are the global adapter's after the last stored round; MB counts the "
    "raw tensor bytes sent down to and up from the clients over all rounds."
)
shown = federated_summary(runs).rename(
    columns={
        "method": "Method", "aggregation": "Rule", "split_text": "Split", "dp_text": "DP",
        "model": "Model", "task": "Task", "seeds": "Seeds", "rounds_done": "Rounds done",
        "rounds": "Rounds", "test": "Test", "test_sd": "Test sd", "validation": "Validation",
        "mb": "MB communicated", "wall_s": "Wall (s)",
    }
)  # fmt: skip
st.dataframe(shown, hide_index=True, width="stretch")

curves = federated_curves(reader)
if not curves.empty:
    st.subheader("Test score against rounds")
    st.altair_chart(curve_chart(curves, "round", "Round"), width="stretch")
    st.subheader("Test score against bytes communicated")
    st.altair_chart(curve_chart(curves, "mb", "MB communicated (up + down, cumulative)"),
                    width="stretch")  # fmt: skip
