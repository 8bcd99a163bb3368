"""Federated: methods trained as simulated clients and a server, round by round; the
global adapter's test score against rounds and against bytes communicated."""

from __future__ import annotations

import streamlit as st

from leaderboard import ui
from leaderboard.federated import (
    curve_chart,
    federated_curves,
    federated_runs,
    federated_summary,
    summary_table,
)

reader, runs = ui.table_page(
    "Federated",
    federated_runs,
    "No federated runs yet: a matrix's `federated:` section declares clients, rounds, "
    "splits and aggregation rules (suite/matrices/federated.yaml).",
)
st.caption(
    "Each run: N clients holding a split of the task's training set (IID, or label skew "
    "drawn from a Dirichlet(alpha) distribution per class), R rounds of local steps from the "
    "global adapter, then the server's aggregation (fedavg: the mean of every tensor; "
    "fedsvd: clients train B only, the server re-factorises B A by SVD). Scores are the "
    "global adapter's after the last stored round, beside the majority class's (predicting "
    "the most frequent training label); communicated counts the raw tensor bytes sent down "
    "to and up from the clients over all rounds. Label skew: the size-weighted mean "
    "total-variation distance between a client's label mix and the whole split's."
)
st.dataframe(summary_table(federated_summary(runs)).styled(), hide_index=True, width="stretch")

curves = federated_curves(reader)
if not curves.empty:
    st.subheader("Test score against rounds")
    st.altair_chart(curve_chart(curves, "round", "Round (0: the initial adapter)"),
                    width="stretch")  # fmt: skip
    st.subheader("Test score against bytes communicated")
    st.altair_chart(curve_chart(curves, "mb", "MiB communicated (up + down, cumulative)"),
                    width="stretch")  # fmt: skip
