"""Start the Streamlit app for `peftbench leaderboard` (imported only by that command)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from leaderboard.data import DB_ENV
from suite.registry import PLUGINS_ENV

APP = Path(__file__).resolve().parent / "app.py"
# Signals that end the CLI and must end its Streamlit child too (Ctrl-C reaches both
# through the terminal's process group; these are sent to the CLI's pid alone).
FORWARDED = (signal.SIGTERM, signal.SIGHUP)
STOP_WAIT_S = 15.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def command(host: str, port: int) -> list[str]:
    """The `streamlit run` command line: headless, no telemetry, no file watcher."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def child_env(db: Path, plugins: list[Path]) -> dict[str, str]:
    """The child's environment: the database, and the --plugins folders ahead of any
    PEFTBENCH_PLUGINS already set, as absolute paths (the app's catalogue, like `run`'s,
    reads that variable), so a user's method page finds its plugin."""
    env = {**os.environ, DB_ENV: str(db)}
    extra = [str(Path(p).resolve()) for p in plugins]
    if extra:
        env[PLUGINS_ENV] = os.pathsep.join(extra + [p for p in [env.get(PLUGINS_ENV)] if p])
    return env


def run(
    db: Path,
    host: str,
    port: int,
    echo: Callable[[str], None] = print,
    plugins: list[Path] | None = None,
) -> int:
    """Serve the leaderboard of `db` until interrupted; returns Streamlit's exit code."""
    db = Path(db).resolve()
    if not db.exists():
        echo(f"warning: no results database at {db} yet; the app will say so until one exists")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    echo(f"peftbench leaderboard: http://{shown}:{port}  (database {db}; Ctrl-C stops it)")
    if host in ("0.0.0.0", "::"):
        echo("bound to every interface: anyone who can reach this machine can read the results")
    proc = subprocess.Popen(
        command(host, port), env=child_env(db, plugins or []), preexec_fn=_die_with_parent
    )
    try:
        with _forwarding(proc):
            return proc.wait()
    except KeyboardInterrupt:
        return stop(proc)


def stop(proc: subprocess.Popen) -> int:
    """Terminate the child and wait for it; killed if it has not gone in STOP_WAIT_S."""
    proc.terminate()
    try:
        return proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@contextmanager
def _forwarding(proc: subprocess.Popen) -> Iterator[None]:
    """While the child serves, a SIGTERM or SIGHUP to the CLI is passed on to it (the CLI
    then returns the child's exit code), so no orphan keeps serving on the port."""

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the CLI dies, even by SIGKILL (Linux;
    elsewhere the forwarded signals above are the only guard). libc is loaded before the
    fork, so the child only makes the call."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
