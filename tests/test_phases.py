"""Where a cell's wall time goes: phases on every row that add up to its total, the
`cell_phases` view, an older store upgraded to hold them, and the printed breakdown."""

from __future__ import annotations

import duckdb
import pytest

from suite.phase_report import phase_line, phase_report
from suite.results import PHASES, RUNNER_PHASES, CellResult, phase_column
from suite.train.phases import PhaseClock


def test_the_clock_adds_up_and_names_the_rest_other():
    clock = PhaseClock()
    with clock.phase("train"):
        pass
    with clock.phase("train"):
        pass
    out = clock.finish(10.0)
    assert set(out) == {"train", "other"}
    assert out["train"] + out["other"] == pytest.approx(10.0)


def test_an_unknown_phase_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown phase 'loading'; choose one of data_load"):
        with PhaseClock().phase("loading"):
            pass


@pytest.fixture(scope="module")
def stored(tiny_plugins, tmp_path_factory):
    """The tiny matrix (3 cells) run in this process into a fresh store."""
    from suite.driver import in_process_executor, plan, run_plan
    from suite.registry import Catalog
    from suite.store.store import Store
    from suite.train import caches

    # The in-process worker's caches are this process's: start them empty, so the first
    # cell loads (earlier tests in the session may have loaded the same tiny model).
    caches.clear()
    folder = tmp_path_factory.mktemp("phases")
    store = Store(folder / "results.duckdb")
    the_plan = plan(Catalog.discover([tiny_plugins]), "tiny", store)
    summary = run_plan(the_plan, store, in_process_executor(None, folder))
    assert summary.all_ok, [r.error for r in summary.results]
    return store, summary


def test_every_row_has_phases_that_add_up_to_its_total(stored):
    store, summary = stored
    rows = store.query("SELECT * FROM cell_phases ORDER BY cell_total_s DESC")
    assert len(rows) == 3
    for _, row in rows.iterrows():
        parts = [row[phase_column(p)] for p in PHASES]
        assert all(p >= 0 for p in parts)
        assert sum(parts) == pytest.approx(row["cell_total_s"], rel=1e-6)
        assert row["phases_cover"] == pytest.approx(1.0)
        runner = sum(row[phase_column(p)] for p in RUNNER_PHASES)
        assert runner == pytest.approx(row["cell_wall_s"], rel=1e-6)
        assert row["phase_train_s"] > 0 and row["phase_evaluate_s"] > 0
    # One worker: its first cell loads the backbone, the later ones find it cached.
    assert sorted(rows["model_cached"].tolist()) == [False, True, True]
    assert sorted(rows["data_cached"].tolist()) == [False, True, True]
    # The driver's summary carries the same totals as the rows.
    totals = sorted(r.cell_total_s for r in summary.results)
    assert totals == pytest.approx(sorted(rows["cell_total_s"].tolist()))


def test_every_row_stores_the_cpu_time_its_process_used(stored):
    """Measured, not wall x threads: a cell's process time (every thread) while it ran."""
    store, _ = stored
    rows = store.query("SELECT cell_cpu_s, cell_wall_s FROM cell_runs")
    assert len(rows) == 3 and (rows.cell_cpu_s > 0).all()
    # One worker thread here: CPU can exceed wall only by the process's other threads.
    assert (rows.cell_cpu_s < 4 * rows.cell_wall_s + 1.0).all()


def test_real_tokens_and_their_peak_fraction_are_stored(stored):
    store, _ = stored
    rows = store.query(
        "SELECT train_tokens, train_real_tokens, train_flops, train_flops_real, "
        "flops_fraction_of_peak, flops_fraction_of_peak_real FROM results"
    )
    assert (rows["train_real_tokens"] <= rows["train_tokens"]).all()
    assert (rows["train_real_tokens"] > 0).all()
    ratio = rows["train_flops_real"] / rows["train_flops"]
    assert ratio.tolist() == pytest.approx(
        (rows["train_real_tokens"] / rows["train_tokens"]).tolist()
    )
    frac = rows["flops_fraction_of_peak_real"] / rows["flops_fraction_of_peak"]
    assert frac.tolist() == pytest.approx(ratio.tolist())


def test_an_older_store_gets_the_phase_columns(tmp_path, monkeypatch):
    from suite.store.store import Store
    from tests import test_store_upgrade as upgrade

    added = {phase_column(p) for p in PHASES} | {"cell_total_s", "model_cached", "data_cached"}
    monkeypatch.setattr(upgrade, "ADDED_IN_4", upgrade.ADDED_IN_4 | added)
    path = tmp_path / "old.duckdb"
    upgrade._old_store(path)
    Store(path).init()
    with duckdb.connect(str(path), read_only=True) as con:
        have = {r[0] for r in con.execute("DESCRIBE cell_runs").fetchall()}
        n = con.execute("SELECT count(*) FROM cell_phases").fetchone()[0]
        old = con.execute("SELECT cell_total_s FROM results").fetchall()
    assert added <= have
    assert n == 0 and old == [(None,)]  # an older row has no phases: none are made up


def test_the_printed_breakdown_is_one_line_per_cell():
    fields = {phase_column(p): 0.0 for p in PHASES}
    fields.update({phase_column("train"): 8.0, phase_column("evaluate"): 1.5})
    fields.update({phase_column("other"): 0.05, phase_column("dispatch"): 0.45})
    result = CellResult(cell_id="c", status="ok", cell_total_s=10.0, model_cached=True, **fields)
    line = phase_line("lora x t", result)
    assert line == (
        "lora x t: 10.0 s = train 8.0 (80%), evaluate 1.5 (15%), dispatch 0.5 (4%), "
        "rest 0.1; cached: model"
    )
    assert phase_report([("x", CellResult(cell_id="d", status="failed"))]) == []
