"""Ablations: saved queries over the views, and a free SQL box (one read-only SELECT)."""

from __future__ import annotations

import altair as alt
import streamlit as st

from leaderboard import sqlbox, ui
from leaderboard.format import styled_auto
from leaderboard.saved import SAVED, run_saved

reader, filters = ui.page_setup()
if filters is None:
    st.stop()
filters = ui.need_single_task(filters, sorted(ui.scoped_choices(reader, filters)["task"].unique()))
st.title(f"Ablations: {filters.task} on {filters.model}")
st.caption(f"Protocol **{filters.protocol}**: every series is one protocol's rows.")
name = st.radio("Saved query", list(SAVED), format_func=lambda k: SAVED[k].title, key="saved")
query = SAVED[name]
st.caption(query.description)
frame = ui.guarded(run_saved, reader, name, filters.task, filters.model, filters.protocol)
if frame.empty:
    st.info("No rows for this selection.")
else:
    x_type = "N" if frame[query.x].dtype == object else "Q"
    scale = alt.Scale(type="log") if query.x_log else alt.Scale(zero=False)
    x = alt.X(f"{query.x}:{x_type}", scale=scale) if x_type == "Q" else alt.X(f"{query.x}:N")
    points = (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y(f"{query.y}:Q", scale=alt.Scale(zero=False)),
            color=f"{query.color}:N",
            tooltip=list(frame.columns[:8]),
        )
    )
    if query.facet:
        points = points.properties(width=220, height=160).facet(facet=f"{query.facet}:N", columns=3)
    st.altair_chart(points, width="stretch" if not query.facet else "content")
    st.dataframe(styled_auto(frame), hide_index=True, width="stretch")
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
