"""Compression: a trained model pruned or factorised after training, its source task's
metric against sparsity per method, the dense model as the reference line, latencies."""

from __future__ import annotations

import streamlit as st

from leaderboard import charts, tables, ui
from leaderboard.pagedata import primary_metric
from leaderboard.posthoc import compression_problems, compression_rows, compression_sources

reader, sources = ui.table_page(
    "Compression",
    compression_sources,
    "No compressions yet: a matrix's `posthoc:` section declares compress stages.",
)
labels = [
    f"{r.source_method} on {r.task} x {r.model} (seed {r.seed})" for r in sources.itertuples()
]
choice = st.selectbox("Compressed model", labels, key="compression_source")
source = sources.iloc[labels.index(choice)]
rows = ui.guarded(
    compression_rows, reader, source["task"], source["model"], source["source_method"],
    int(source["seed"]),
)  # fmt: skip
metric = ui.guarded(primary_metric, reader, source["task"])
st.caption(
    "Sparsity is the share of the targeted weights that are zero (WeLore: the share of "
    "their parameters its low-rank factors save). An N:M pattern is its own series. "
    "Latency is the median per test batch with dense kernels, beside the dense model's "
    "on the same machine; calibration is a fixed slice of the training split."
)
st.altair_chart(charts.compression_chart(rows, metric.label), width="stretch")
st.dataframe(tables.compression_table(rows).styled(), hide_index=True, width="stretch")
problems = ui.guarded(compression_problems, reader)
if not problems.empty:
    st.subheader("Compressions that did not run")
    st.dataframe(problems, hide_index=True, width="stretch")
