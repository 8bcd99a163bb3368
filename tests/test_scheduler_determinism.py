"""Determinism: the same cell run twice on CPU gives identical metrics and losses, also
when the second run reuses the worker's cached model (a fresh copy, never a mutated one)."""

from __future__ import annotations

from pathlib import Path

from suite.driver import in_process_executor, plan, run_plan
from suite.registry import Catalog
from suite.store.store import Store
from tests.scheduler_helpers import rows, write_matrix


def test_same_cell_twice_gives_identical_metrics(tiny_plugins: Path, tmp_path: Path):
    from suite.train import caches

    # The in-process worker's caches are this process's: start them empty, so the count
    # below is this test's own (earlier tests in the session load models too).
    caches.clear()
    caches.COUNTS["model_loads"] = 0
    matrix = write_matrix(tmp_path, "det", ["lora", "bitfit"])
    store = Store(tmp_path / "results" / "r.duckdb")
    catalog = Catalog.discover([tiny_plugins])
    executor = in_process_executor(results_dir=store.path.parent)
    first = run_plan(plan(catalog, str(matrix), store), store, executor)
    second = run_plan(plan(catalog, str(matrix), store, rerun=True), store, executor)
    assert first.all_ok and second.all_ok
    for a, b in zip(first.results, second.results, strict=True):
        assert a.cell_id == b.cell_id
        assert a.test_metrics == b.test_metrics and a.val_metrics == b.val_metrics
        assert a.loss_curve == b.loss_curve and len(a.loss_curve) == 2
    assert executor.worker_stats[0]["model_loads"] == 1  # loaded once, reused
    stored = rows(
        store.path,
        "select cell_id, count(distinct test_primary), count(*) from cell_runs group by cell_id",
    )
    assert len(stored) == 2 and all(r[1] == 1 and r[2] == 2 for r in stored)
