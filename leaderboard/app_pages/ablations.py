"""Ablations: saved queries over the views, and a free SQL box (one read-only SELECT)."""

from __future__ import annotations

import streamlit as st

from leaderboard import sqlbox, ui
from leaderboard.charts import ablation_chart
from leaderboard.format import styled_auto
from leaderboard.saved import SAVED, run_saved

reader, filters = ui.page_setup()
if filters is None:
    st.stop()
filters = ui.need_single_task(filters, sorted(ui.scoped_choices(reader, filters)["task"].unique()))
st.title(f"Ablations: {filters.task} on {filters.model}")
st.caption(
    f"Protocol **{ui.protocol_words(reader, filters.protocol)}**: every series is one "
    "protocol's rows."
)
name = st.radio("Saved query", list(SAVED), format_func=lambda k: SAVED[k].title, key="saved")
query = SAVED[name]
st.caption(query.description)
frame = ui.guarded(run_saved, reader, name, filters.task, filters.model, filters.protocol)
if frame.empty:
    st.info("No rows for this selection.")
else:
    if frame[query.y].isna().all():
        st.info(query.no_y)
    else:
        st.altair_chart(ablation_chart(frame, query), width="content" if query.facet else "stretch")
    st.dataframe(styled_auto(frame, labels=True), hide_index=True, width="stretch")
with st.expander("SQL of this saved query (? = task, model, protocol)"):
    st.code(query.sql, language="sql")

st.subheader("SQL")
st.caption(
    f"One SELECT over the views (leaderboard, pareto, results, trials, rank_sweep, aggregate) "
    f"or tables; read-only, no file access, at most {sqlbox.ROW_CAP:,} rows."
)
sql = st.text_area(
    "Query", "SELECT method, task, mean, ci_low, ci_high FROM leaderboard", key="sql"
)
if st.button("Run query", key="run_sql"):
    try:
        answer = sqlbox.run(reader.path, sql)
    except sqlbox.Refused as exc:
        st.error(f"Refused: {exc}")
    except Exception as exc:  # noqa: BLE001 - DuckDB errors are the user's SQL
        st.error(f"Query failed: {exc}")
    else:
        if answer.truncated:
            st.warning(f"Showing the first {sqlbox.ROW_CAP:,} rows.")
        st.dataframe(styled_auto(answer.frame), hide_index=True, width="stretch")
