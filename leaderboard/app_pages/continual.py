"""Continual: methods trained through a task sequence, scored on every task after every
stage; GEM's average accuracy, backward transfer (forgetting) and forward transfer."""

from __future__ import annotations

import streamlit as st

from leaderboard import ui
from leaderboard.continual import (
    MAJORITY_ROW,
    accuracy_matrix,
    continual_rows,
    continual_summary,
    problems_table,
    summary_table,
)
from leaderboard.format import styled

reader, rows = ui.table_page(
    "Continual",
    continual_rows,
    "No continual runs yet: a matrix's `continual:` section declares a task sequence "
    "(suite/matrices/continual.yaml).",
)
st.caption(
    "Average accuracy (ACC): the mean test score over the sequence's tasks after the last "
    "stage, beside the majority class's (each task scored on the same examples). Backward "
    "transfer (BWT): the mean change on each earlier task from just after it was trained to "
    "the end (negative is forgetting). Forward transfer (FWT): the mean gain on each task "
    "before it is trained, over its score before any training (GEM, Lopez-Paz and Ranzato "
    "2017). Every task has its own head; per-task (an adapter per task) is the retention "
    "upper bound, sequential the lower."
)
st.dataframe(summary_table(continual_summary(rows)).styled(), hide_index=True, width="stretch")

ok = rows[rows["status"] == "ok"]
if not ok.empty:
    st.subheader("Accuracy matrix")
    st.caption(
        "Each task's test score (its primary metric) before any training and after each "
        f"stage; the last row, {MAJORITY_ROW}, is what predicting the task's most frequent "
        "training label scores on the same examples."
    )
    labels = {
        r.cell_id: f"{r.name} ({r.strategy}) x {r.model}, seed {r.seed}" for r in ok.itertuples()
    }
    chosen = st.selectbox("Cell", list(labels), format_func=labels.get)
    matrix = accuracy_matrix(reader, chosen)
    kinds = {c: "score" for c in matrix.columns if c != "Stage"}
    st.dataframe(styled(matrix, kinds), hide_index=True, width="stretch")
problems = problems_table(rows)
if not problems.empty:
    st.subheader("Cells that did not finish")
    st.dataframe(problems.styled(), hide_index=True, width="stretch")
