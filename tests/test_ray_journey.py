"""The README's cluster journey with real processes and Ray's defaults: a token in
~/.ray/auth_token (which any embedded run writes) makes `ray start --head` enable token
authentication; a second node joins; `peftbench run --address` sends the token as Ray's
own tools do and stores every cell. Without it the driver was refused ("InvalidAuthToken")
and said only that no cluster could be joined.

No `ray stop` (it would stop every Ray of this user on the machine): the test stops the
processes it started, found by their own temp folder."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_started(procs: list[subprocess.Popen], temp: str) -> None:
    """Stop the `ray start --block` processes, then whatever is left of their nodes."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any(temp in part for part in p.info["cmdline"] or []):
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.mark.slow
def test_run_joins_a_token_cluster_started_with_ray_defaults(tiny_plugins, tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"HOME": str(home), "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    temp = tempfile.mkdtemp(prefix="pbj-", dir="/tmp")  # short: Ray's socket paths
    ray = str(Path(sys.executable).parent / "ray")
    address = f"127.0.0.1:{_free_port()}"
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    procs = [subprocess.Popen(
        [ray, "start", "--head", f"--port={address.split(':')[1]}", f"--temp-dir={temp}",
         "--include-dashboard=false", *common],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    try:
        time.sleep(15)
        # A joining node needs the mode said (`ray start --address` does not look for a
        # token); the driver below is given nothing but the address.
        procs.append(subprocess.Popen(
            [ray, "start", f"--address={address}", *common], env=env | {"RAY_AUTH_MODE": "token"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        time.sleep(10)
        db = tmp_path / "r.duckdb"
        run = subprocess.run(
            [sys.executable, "-m", "suite.cli", "run", "tiny", "--plugins", str(tiny_plugins),
             "--db", str(db), "--address", address],
            env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        assert "done: 3 ok" in run.stderr
        assert "InvalidAuthToken" not in run.stderr
    finally:
        _stop_started(procs, temp)


def test_an_authentication_failure_says_so():
    from suite.scheduler.cluster import join_failure

    refused = join_failure("127.0.0.1:1", ConnectionError("InvalidAuthToken: token is wrong"))
    assert "refused this driver's authentication" in refused
    assert "RAY_AUTH_TOKEN" in refused and "~/.ray/auth_token" in refused
    closed = f"127.0.0.1:{_free_port()}"
    other = join_failure(closed, ConnectionError("Failed to connect to Ray cluster"))
    assert "cannot join the Ray cluster" in other and "ray start --head" in other
    # Ray reports a refused token as a failed connection: a port that answers says so.
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        answering = f"127.0.0.1:{listening.getsockname()[1]}"
        probable = join_failure(answering, ConnectionError("Failed to connect to Ray cluster"))
    assert "token authentication" in probable and "RAY_AUTH_TOKEN" in probable
