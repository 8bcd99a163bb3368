"""Drive headless Chromium over the DevTools protocol (for the browser test and benchmark).

No Playwright: Debian's `chromium` is started with a fresh profile and a loopback
debugging port, and a websocket sends CDP commands. Page readiness is polled in the DOM
(a Vega chart drawn, the data grid present, Streamlit no longer running), never waited
for on a fixed clock, because a cold server can take a while to first paint.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]
# JavaScript that reports what a leaderboard page has drawn.
PAGE_STATE = """(() => {
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')];
  const drawn = charts.filter(c => {
    const el = c.querySelector('canvas, svg.marks');
    return el && el.getBoundingClientRect().width > 50;
  });
  return {
    charts: charts.length,
    drawn: drawn.length,
    tables: document.querySelectorAll('[data-testid="stDataFrame"]').length,
    running: !!document.querySelector('[data-testid="stStatusWidget"]'),
    exceptions: document.querySelectorAll('[data-testid="stException"]').length,
    title: (document.querySelector('[data-testid="stMain"] h1') || {}).innerText || '',
    nav: (document.querySelector('[data-testid="stSidebarNav"]') || {}).innerText || '',
  };
})()"""


def find_chromium() -> str | None:
    """Debian's chromium (or another Chromium/Chrome binary on PATH)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    """Wait until `url` answers 200 (e.g. Streamlit's /_stcore/health)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)


class Browser:
    """One headless Chromium with one page, driven over CDP."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000):
        self.home = tempfile.mkdtemp(prefix="peftbench-chromium-")
        profile = os.path.join(self.home, "profile")
        env = {**os.environ, "HOME": self.home}
        args = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        self.proc = subprocess.Popen(
            [*args, "about:blank"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        port = self._devtools_port(Path(profile) / "DevToolsActivePort")
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(self._connect_page(port))
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _devtools_port(self, marker: Path, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while not (marker.exists() and marker.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        return int(marker.read_text().split()[0])

    def _connect_page(self, port: int):
        from websockets.sync.client import connect

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t.get("type") == "page")
        return connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10)

    def call(self, method: str, **params):
        """Send one CDP command and return its result (events in between are skipped)."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, predicate, timeout_s: float = 90.0, poll_s: float = 0.1) -> dict:
        """Poll PAGE_STATE until `predicate(state)` holds; returns the last state."""
        deadline = time.monotonic() + timeout_s
        state: dict = {}
        while time.monotonic() < deadline:
            state = self.evaluate(PAGE_STATE) or {}
            if predicate(state):
                return state
            time.sleep(poll_s)
        raise TimeoutError(f"page not ready within {timeout_s:.0f} s; last state {state}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.home, ignore_errors=True)


def chart_and_table_ready(state: dict) -> bool:
    """The page has drawn at least one chart and one table and Streamlit is idle."""
    return state.get("drawn", 0) >= 1 and state.get("tables", 0) >= 1 and not state["running"]
