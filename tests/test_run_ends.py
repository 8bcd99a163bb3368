"""How `peftbench run` ends: a cell at its task's majority baseline gets a warning that
the budget is probably too small; Ctrl-C and SIGTERM say the run stopped, how many cells
are stored, and the command that resumes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.results import CellResult, SplitPredictions
from tests.helpers import catalog


def _smoke_cell():
    from suite.cells import expand_matrix

    cat = catalog()
    entry = cat.matrices.get("smoke")
    return expand_matrix(entry.spec, cat, entry).cells[1]


def _result(cell, accuracy: float, preds: list[int]) -> CellResult:
    return CellResult(
        cell_id=cell.cell_id, status="ok", test_metrics={"accuracy": accuracy},
        baseline_test={"accuracy": 0.4021164021164021},
        predictions={"test": SplitPredictions(pred=preds, gold=[0, 1, 2, 0], score=[None] * 4)},
    )  # fmt: skip


def test_a_cell_at_the_majority_baseline_is_warned_about():
    from suite.baseline_check import baseline_warnings

    cell = _smoke_cell()
    at = _result(cell, 0.4021164021164021 + 1e-12, [0, 1, 2, 0])
    (line,) = baseline_warnings([cell], [at])
    assert f"{cell.method.label} on drug-condition (seed 0)" in line
    assert "equals the majority baseline" in line and "probably too small" in line
    assert "5 epochs" in line  # the smoke matrix's budget, in words
    one_class = _result(cell, 0.61, [3, 3, 3, 3])
    assert "every test prediction is one class (3)" in baseline_warnings([cell], [one_class])[0]
    assert baseline_warnings([cell], [_result(cell, 0.61, [0, 1, 2, 1])]) == []


def test_the_resume_command_is_the_same_command_without_rerun():
    from suite.cli_run import resume_command

    argv = ["run", "my matrix.yaml", "--rerun", "--db", "r.duckdb"]
    assert resume_command(argv) == "peftbench run 'my matrix.yaml' --db r.duckdb"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_says_how_to_resume(tiny_plugins: Path, tmp_path: Path, sig):
    matrix = tmp_path / "long.yaml"
    matrix.write_text(
        "name: long\nmodels: [tiny-bert]\nmethods: [head]\ntasks: [drug-condition]\n"
        f"seeds: {list(range(40))}\nbudget: {{max_steps: 3, batch_size: 8}}\n"
    )
    db = tmp_path / "r.duckdb"
    args = ["run", str(matrix), "--plugins", str(tiny_plugins), "--db", str(db),
            "--executor", "local"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "suite.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    logs = tmp_path / "logs"
    deadline = time.monotonic() + 300
    while not any(logs.glob("*/*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # the first cell's log: one cell is stored
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    what = "SIGTERM" if sig == signal.SIGTERM else "interrupted"
    assert f"stopped ({what}):" in err and "of the matrix's 40 cells are stored ok" in err, err
    assert f"peftbench run {matrix} --plugins" in err
    assert "Traceback" not in err and "SIGTERM received" not in err


def test_no_result_is_stored_after_a_stop_signal(monkeypatch):
    """A runner that turned the interrupt into an error must not let the run go on."""
    from suite import cli_run

    stored = []

    def inner(cells, on_result):
        for cell in cells:
            on_result(cell, "report")

    executor = cli_run.StopsOnSignals(inner)
    executor(["a"], lambda cell, report: stored.append(cell))
    monkeypatch.setattr(cli_run, "_received", ["interrupted"])
    with pytest.raises(KeyboardInterrupt):
        executor(["b", "c"], lambda cell, report: stored.append(cell))
    assert stored == ["a"]
