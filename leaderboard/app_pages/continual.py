"""Continual: methods trained through a task sequence, scored on every task after every
stage; GEM's average accuracy, backward transfer (forgetting) and forward transfer."""

from __future__ import annotations

import streamlit as st

from leaderboard import ui
from leaderboard.continual import accuracy_matrix, continual_rows, continual_summary

reader, rows = ui.table_page(
    "Continual",
    continual_rows,
    "No continual runs yet: a matrix's `continual:` section declares a task sequence "
    "(suite/matrices/continual.yaml).",
)
st.caption(
    "ACC: the mean test score over the sequence's tasks after the last stage. BWT: the mean "
    "change on each earlier task from just after it was trained to the end (negative is "
    "forgetting). FWT: the mean gain on each task before it is trained, over its score "
    "before any training (GEM, Lopez-Paz and Ranzato 2017). Every task has its own head; "
    "per-task (an adapter per task) is the retention upper bound, sequential the lower."
)
summary = continual_summary(rows)
shown = summary.rename(
    columns={
        "method": "Method", "strategy": "Strategy", "model": "Model",
        "sequence_text": "Sequence", "seeds": "Seeds ok", "not_ok": "Not ok",
        "acc": "ACC", "acc_sd": "ACC sd", "bwt": "BWT", "bwt_sd": "BWT sd", "fwt": "FWT",
        "trainable_params": "Trainable params", "train_wall_s": "Train time (s)",
    }
)  # fmt: skip
st.dataframe(shown, hide_index=True, width="stretch")

ok = rows[rows["status"] == "ok"]
if not ok.empty:
    st.subheader("Accuracy matrix")
    labels = {
        r.cell_id: f"{r.method} ({r.strategy}) x {r.model}, seed {r.seed}" for r in ok.itertuples()
    }
    chosen = st.selectbox("Cell", list(labels), format_func=labels.get)
    st.dataframe(accuracy_matrix(reader, chosen), hide_index=True, width="stretch")
problems = rows[rows["status"] != "ok"]
if not problems.empty:
    st.subheader("Cells that did not finish")
    st.dataframe(problems[["method", "strategy", "model", "seed", "status", "error"]],
                 hide_index=True, width="stretch")  # fmt: skip
