"""Durability: SIGKILL the driver mid-matrix, run again, and only the rest runs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from suite.scheduler.cluster import holders, temp_dir_for
from tests.scheduler_helpers import REPO, cli_args, rows, run_cli, write_matrix


def _wait_for_rows(db: Path, proc: subprocess.Popen, at_least: int, wait_s: float = 300) -> int:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                n = rows(db, "select count(*) from cell_runs", wait_s=1)[0][0]
            except Exception:  # noqa: BLE001 - the writer may hold the file or be creating it
                n = 0
            if n >= at_least:
                return n
        time.sleep(0.1)
    raise AssertionError(f"driver finished or stalled before {at_least} rows were written")


@pytest.mark.slow
def test_killed_driver_resumes_only_unfinished_cells(tiny_plugins: Path, tmp_path: Path):
    matrix = write_matrix(tmp_path, "six", ["head", "lora", "bitfit"], seeds=[0, 1])
    db = tmp_path / "results" / "r.duckdb"
    args = cli_args(matrix, db, [tiny_plugins], "--workers", "1")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_rows(db, proc, at_least=1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done_before = rows(db, "select count(*) from cell_runs where status = 'ok'")[0][0]
    assert 1 <= done_before < 6

    again = run_cli(matrix, db, [tiny_plugins])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{done_before} already stored ok, {6 - done_before} to run" in again.stderr
    ok = rows(db, "select cell_id, count(*) from cell_runs where status = 'ok' group by cell_id")
    assert len(ok) == 6 and all(n == 1 for _, n in ok)  # every cell once, none twice
    # The killed run's embedded Ray left nothing running (the rerun reaps leftovers).
    sessions = list(temp_dir_for(db.parent).glob("session_2*"))
    assert all(holders(s) == [] for s in sessions if not s.name.endswith(f"_{proc.pid}"))
    assert not any(s.name.endswith(f"_{proc.pid}") for s in sessions)
