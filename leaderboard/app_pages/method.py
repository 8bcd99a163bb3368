"""Method: one method's YAML, citation, source, conformance claims, results and loss curves."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import tables, ui
from leaderboard.catalog import method_info
from leaderboard.pagedata import long_curves, method_data, methods

reader, _ = ui.page_setup(with_filters=False)
names = ui.guarded(methods, reader)
if not names:
    st.info("No successful results yet.")
    st.stop()
method = st.selectbox("Method", names, key="method")
data = ui.guarded(method_data, reader, method)
spec = data["spec"]
st.title(f"Method: {method}")
fidelity = data["rows"]["fidelity"].dropna() if "fidelity" in data["rows"] else []
if len(fidelity):
    level = fidelity.iloc[0]
    version = int(data["rows"]["method_version"].max())
    text = f"Fidelity: **{level}** (implementation version {version}; docs/fidelity.md)."
    if level == "reconstructed":
        st.warning(
            text + " No code and no full text of this method could be read: the "
            "implementation is the project's reading of its abstract or summaries."
        )
    elif level == "paper":
        st.info(text + " Implemented from the full paper text; no reference code was run.")
    else:
        st.success(text + " Golden-tested against numbers its own reference code produced.")
left, right = st.columns(2)
with left:
    st.subheader("Resolved spec (as stored with its results)")
    st.code(spec["method_yaml"].iloc[0] if len(spec) else "", language="yaml")
with right:
    info = method_info(spec["method_name"].iloc[0]) if len(spec) else None
    if info is None:
        st.info("This method's plugin is not registered here; only stored results are shown.")
    else:
        st.markdown(info.description)
        st.markdown(f"**Citation:** {info.citation or 'none declared'}")
        if info.url:
            st.markdown(f"**Code:** {info.url}")
        st.markdown(f"**Implementation follows:** {info.source or 'not declared'}")
        st.subheader("Conformance")
        checks = pd.DataFrame(info.conformance, columns=["Check", "Claimed"])
        st.dataframe(checks, hide_index=True, width="stretch")
        if info.note:
            st.caption(info.note)
st.subheader("Results across tasks and models")
st.dataframe(tables.method_results_table(data["rows"]).styled(), hide_index=True, width="stretch")
st.subheader("Training loss")
curves = long_curves(data["curves"])
if curves.empty:
    st.info("No loss curves stored for this method.")
else:
    chart = (
        alt.Chart(curves)
        .mark_line()
        .encode(
            x=alt.X("point:Q", title="logged step"),
            y=alt.Y("loss:Q", title="training loss"),
            color=alt.Color("cell:N", title="task / profile / seed"),
        )
    )
    st.altair_chart(chart, width="stretch")
