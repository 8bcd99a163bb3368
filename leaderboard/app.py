"""peftbench leaderboard: `peftbench leaderboard [--db PATH]` runs this with Streamlit.

Pages: Overview, Pareto, Method, Ablations, Merging, Compression, Continual, Federated,
Hardware.
Every page reads the store's views through `leaderboard.data.Reader` (read-only, retried,
cached per file version) and draws the shared sidebar itself (`leaderboard.ui.page_setup`),
so its filters follow the page.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only this folder on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

# Not `pages/`: Streamlit would also auto-discover that folder as a legacy multipage app.
PAGES = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="peftbench leaderboard", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "overview.py", title="Overview", default=True),
        st.Page(PAGES / "pareto.py", title="Pareto"),
        st.Page(PAGES / "method.py", title="Method"),
        st.Page(PAGES / "ablations.py", title="Ablations"),
        st.Page(PAGES / "merging.py", title="Merging"),
        st.Page(PAGES / "compression.py", title="Compression"),
        st.Page(PAGES / "continual.py", title="Continual"),
        st.Page(PAGES / "federated.py", title="Federated"),
        st.Page(PAGES / "hardware.py", title="Hardware"),
    ]
)
navigation.run()
