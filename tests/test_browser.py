"""The leaderboard in a real browser: `peftbench leaderboard` on a free loopback port,
headless Debian Chromium driven over the DevTools protocol, the DOM polled until the
charts are drawn; screenshots go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import browser
from tests.support.demo import demo_db_copy

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = browser.find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (CI installs Debian's chromium via `make browser-deps`)",
)


@pytest.fixture
def server(tmp_path):
    db = demo_db_copy(tmp_path / "demo.duckdb")
    port = browser.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "suite.cli", "leaderboard", "--db", str(db), "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: the CLI and its Streamlit child stop together
    )
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        browser.wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# The sidebar's pages, in order, as the app declares them (written once, in app.py).
NAV = re.findall(r'st\.Page\([^)]*title="([^"]+)"', (REPO / "leaderboard/app.py").read_text())


@pytest.mark.slow
def test_pareto_and_table_render_in_chromium(server, tmp_path):
    from leaderboard.data import Reader
    from leaderboard.pagedata import protocols

    # Stored protocol ids ("demo@1a2b3c4d"): pages name protocols in words (issue 23).
    ids = protocols(Reader(demo_db_copy(tmp_path / "ids.duckdb")))["protocol"].tolist()
    chrome = browser.Browser(CHROMIUM)
    try:
        chrome.navigate(server + "/method")  # a page's own URL first, on a fresh session
        state = chrome.wait_for(lambda s: s["title"].startswith("Method"), timeout_s=120)
        assert state["nav"].split() == NAV  # st.navigation's pages, not a folder listing

        chrome.navigate(server + "/")
        state = chrome.wait_for(browser.chart_and_table_ready, timeout_s=120)
        assert state["title"].startswith("Overview: drug-condition")
        assert state["exceptions"] == 0
        chrome.screenshot(ARTIFACTS / "overview.png")
        assert "None" not in chrome.evaluate("document.body.innerText")

        chrome.navigate(server + "/pareto")
        state = chrome.wait_for(
            lambda s: browser.chart_and_table_ready(s) and s["title"].startswith("Pareto"),
            timeout_s=120,
        )
        assert state["drawn"] == 1 and state["tables"] == 1 and state["exceptions"] == 0
        assert state["nav"].split() == NAV
        shot = chrome.screenshot(ARTIFACTS / "leaderboard.png")
        assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
        for page, title in (("method", "Method"), ("ablations", "Ablations"),
                            ("merging", "Merging"), ("compression", "Compression"),
                            ("hardware", "Hardware")):  # fmt: skip
            chrome.navigate(f"{server}/{page}")
            state = chrome.wait_for(
                lambda s, t=title: s["title"].startswith(t) and s["tables"] >= 1, timeout_s=120
            )
            assert state["exceptions"] == 0, page
            chrome.screenshot(ARTIFACTS / f"{page}.png")
            shown = chrome.evaluate("document.body.innerText")
            assert not [i for i in ids if i in shown], page
        text = chrome.evaluate("document.body.innerText")
        assert "None" not in text  # missing values read "–"
    finally:
        chrome.close()
