"""The continual track end to end through the CLI on the tiny BERT (two tasks, 2 steps
each): the accuracy matrix is stored, its views read it, a rerun skips what is stored;
and a continual matrix's bad specs are refused with a message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import pytest

from suite.driver import plan
from suite.errors import SpecError
from suite.registry import Catalog
from suite.store.store import Store
from tests.test_cli_e2e import cli

MATRIX = """\
name: continual-tiny
models: [tiny-bert]
methods: [lora]
tasks: [drug-condition, drug-sentiment]
seeds: [0]
budget: {max_steps: 2, batch_size: 8}
continual: {eval_examples: 32}
"""


def _write(folder: Path, text: str) -> Path:
    path = folder / "continual-tiny.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _rows(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_a_continual_matrix_runs_stores_its_accuracy_matrix_and_resumes(tiny_plugins, tmp_path):
    db, path = tmp_path / "r.duckdb", _write(tmp_path, MATRIX)
    args = (
        "run",
        str(path),
        "--plugins",
        str(tiny_plugins),
        "--db",
        str(db),
        "--executor",
        "local",
    )
    first = cli(*args, timeout_s=1800)  # two cells; a busy shared CPU is slow
    assert first.returncode == 0, first.stderr + first.stdout
    assert "2 cells, 0 already stored ok, 2 to run" in first.stderr
    assert "ACC" in first.stdout and "BWT" in first.stdout
    runs = _rows(db, "SELECT strategy, status, avg_accuracy, bwt, fwt, sequence, "
                     "trainable_params FROM continual_results ORDER BY strategy")  # fmt: skip
    assert [(r[0], r[1]) for r in runs] == [("per-task", "ok"), ("sequential", "ok")]
    assert all(r[5] == ["drug-condition", "drug-sentiment"] for r in runs)
    # One adapter per task holds more parameters than one adapter with two heads.
    assert runs[0][6] > runs[1][6]
    r = {}
    for strategy, stage, position, value in _rows(
        db, "SELECT strategy, stage, position, value FROM continual_matrix"
    ):
        r[strategy, stage, position] = value
    assert len(r) == 2 * 3 * 2  # per strategy: the baseline and 2 stages, 2 tasks each
    # An adapter per task cannot forget, and before task 2 is trained it is the base model.
    assert runs[0][3] == 0.0
    assert r["per-task", 2, 0] == r["per-task", 1, 0]
    assert r["per-task", 1, 1] == r["per-task", 0, 1]
    # The stored ACC/BWT/FWT are GEM's of the stored matrix.
    for (_, _, acc, bwt, fwt, _, _), s in zip(runs, ("per-task", "sequential"), strict=True):
        assert acc == pytest.approx((r[s, 2, 0] + r[s, 2, 1]) / 2)
        assert bwt == pytest.approx(r[s, 2, 0] - r[s, 1, 0])
        assert fwt == pytest.approx(r[s, 1, 1] - r[s, 0, 1])

    second = cli(*args)
    assert second.returncode == 0, second.stderr
    assert "2 already stored ok, 0 to run" in second.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("continual: {strategies: [sequental]}", "unknown strategies ['sequental']; known: "),
        ("tasks: [drug-condition]", "at least 2 tasks"),
        ("methods: [{method: lora, tasks: [drug-condition]}]", "methods (lora).tasks"),
    ],
)
def test_a_bad_continual_matrix_is_refused(tiny_plugins, tmp_path, edit, message):
    key = edit.split(":")[0]
    lines = [line for line in MATRIX.splitlines() if not line.startswith(key + ":")]
    path = _write(tmp_path, "\n".join([*lines, edit]) + "\n")
    with pytest.raises(SpecError) as info:
        plan(Catalog.discover([tiny_plugins]), str(path), Store(tmp_path / "r.duckdb"))
    assert message in str(info.value)


def test_a_dry_run_lists_the_continual_cells(tiny_plugins, tmp_path):
    """`run --dry-run` once failed on a continual matrix (its cells have no single task)."""
    db, path = tmp_path / "r.duckdb", _write(tmp_path, MATRIX)
    result = cli("run", str(path), "--plugins", str(tiny_plugins), "--db", str(db), "--dry-run")
    assert result.returncode == 0, result.stderr + result.stdout
    out = " ".join(result.stdout.split())  # the console may wrap a long line
    assert out.count("continual: ") == 2, result.stdout
    assert out.count("drug-condition -> drug-sentiment") == 2
    assert "lora (sequential)" in out and "lora (per-task)" in out
