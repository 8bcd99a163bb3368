"""Durability of post-hoc stages: SIGKILL the driver once a post-hoc cell is stored, run
again, and only the missing post-hoc cells run; no trained cell runs twice. Through the
CLI with its default executor (post-hoc cells as Ray tasks)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.scheduler_helpers import REPO, cli_args, rows, run_cli

MATRIX = """\
name: posthoc-resume
models: [tiny-bert]
methods: [lora]
tasks: [drug-condition, drug-sentiment]
seeds: [0]
budget: {max_steps: 2, batch_size: 8}
posthoc:
  - name: merge
    stage: merge
    inputs: {method: lora}
    methods: [linear, task-arithmetic, ties, {method: ties, label: ties-dense, params: {density: 0.9}}]
"""


def _wait_for_posthoc(db: Path, proc: subprocess.Popen, wait_s: float = 900) -> int:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                n = rows(db, "select count(*) from posthoc_runs", wait_s=1)[0][0]
            except Exception:  # noqa: BLE001 - the writer may hold the file or be creating it
                n = 0
            if n >= 1:
                return n
        time.sleep(0.1)
    said = proc.stderr.read().decode()[-3000:] if proc.poll() is not None else ""
    raise AssertionError(f"driver finished or stalled before a post-hoc row was written\n{said}")


@pytest.mark.slow
def test_killed_driver_mid_stage_resumes_only_missing_posthoc_cells(tiny_plugins, tmp_path):
    matrix = tmp_path / "posthoc-resume.yaml"
    matrix.write_text(MATRIX)
    db = tmp_path / "results" / "r.duckdb"
    args = cli_args(matrix, db, [tiny_plugins], "--workers", "1")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_posthoc(db, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    done = rows(db, "select count(*) from posthoc_runs where status = 'ok'")[0][0]
    assert 1 <= done < 4
    trained = rows(db, "select cell_id, count(*) from cell_runs group by cell_id")
    assert len(trained) == 2 and all(n == 1 for _, n in trained)

    again = run_cli(matrix, db, [tiny_plugins], "--workers", "1", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    said = " ".join(again.stderr.split())  # the console wraps long lines
    assert "2 cells; post-hoc stages follow, 2 already stored ok, 0 to run" in said
    assert f"post-hoc: 4 cells, {done} already stored ok, {4 - done} to run" in said
    ok = rows(db, "select cell_id, count(*) from posthoc_runs where status = 'ok' group by 1")
    assert len(ok) == 4 and all(n == 1 for _, n in ok)  # every post-hoc cell once
    after = rows(db, "select cell_id, count(*) from cell_runs group by cell_id")
    assert sorted(after) == sorted(trained)  # no trained cell ran again
