"""`peftbench leaderboard` stops its Streamlit child when it is itself stopped: a SIGTERM
sent to the CLI's pid alone (as a service manager or `kill PID` does) must not leave the
child serving on the port as an orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import browser

REPO = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_sigterm_to_the_cli_stops_its_streamlit_child(tmp_path):
    port = browser.free_port()
    cli = subprocess.Popen(
        [sys.executable, "-m", "suite.cli", "leaderboard", "--db", str(tmp_path / "none.duckdb"),
         "--port", str(port), "--no-published"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # so the finally below can clean up after a failure
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert any(url in cli.stdout.readline() for _ in range(8))  # after the no-db warning
        browser.wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=120)
        (child,) = _children(cli.pid)
        cli.send_signal(signal.SIGTERM)  # the CLI's pid only, not its group
        cli.wait(timeout=60)
        assert _gone(child, timeout_s=30), "the Streamlit child outlived the CLI"
        with pytest.raises(OSError):
            browser.wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s=1)
    finally:
        try:  # whatever is left of the session (nothing, when the test passes)
            os.killpg(cli.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cli.wait(timeout=30)
        cli.stdout.close()
