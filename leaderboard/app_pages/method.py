"""Method: one method's YAML, citation, source, conformance claims, results and loss curves."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import tables, ui
from leaderboard.catalog import method_info, with_class_names
from leaderboard.pagedata import long_curves, lost_to_baseline, method_data, methods, tuning_curve

reader, protocol = ui.protocol_page_setup()
names = ui.guarded(methods, reader, protocol) if protocol else {}
if not names:
    st.info("No successful results yet.")
    st.stop()
# The selector keys on labels (a saved selection stays valid) and shows written names.
method = st.selectbox("Method", list(names), format_func=names.get, key="method")
data = ui.guarded(method_data, reader, method, protocol)
spec = data["spec"]
st.title(f"Method: {names[method]}")
st.caption(
    f"Results of protocol **{ui.protocol_words(reader, protocol)}** (chosen in the sidebar); "
    f"stored under the label `{method}`."
)
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
st.subheader("Tuning budget")
curve = ui.guarded(tuning_curve, reader, method, protocol)
if curve.empty:
    st.info("This method was not tuned here (no tuning trials with this label).")
else:
    st.caption(
        "Expected best validation score after k of the method's trials (Dodge et al. 2019), "
        "band: its spread; dashed: the expected test score of the configuration validation "
        "would select at k. Trials' test scores never steer selection."
    )
    curve["panel"] = curve["task"] + " / " + curve["model"] + " / " + curve["profile"]
    base = alt.Chart(curve).encode(x=alt.X("k:Q", title="trials (k)"), color="panel:N")
    band = (
        base.mark_area(opacity=0.15)
        .encode(y=alt.Y("low:Q", title="score"), y2="high:Q")
        .transform_calculate(
            low="datum.expected_best_val - datum.expected_best_val_std",
            high="datum.expected_best_val + datum.expected_best_val_std",
        )
    )
    val = base.mark_line(point=True).encode(y="expected_best_val:Q")
    test = base.mark_line(strokeDash=[4, 3]).encode(y="expected_test_of_selected:Q")
    st.altair_chart(band + val + test, width="stretch")
st.subheader("Examples it gets wrong that the baseline method gets right")
lost = ui.guarded(lost_to_baseline, reader, method, protocol=protocol)
if lost.empty:
    st.info("None (or no per-example predictions stored for this method and its baseline).")
else:
    st.caption(
        "Test examples (by position in the split) the method gets wrong on most of its "
        "seeds while its matrix's baseline method gets them right; classes by the task's "
        "label names (ids where the task's data is not installed here)."
    )
    lost = with_class_names(lost, ["gold", "prediction", "baseline_prediction"])
    st.dataframe(tables.lost_examples_table(lost).styled(), hide_index=True, width="stretch")
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
