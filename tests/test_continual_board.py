"""The continual store and the leaderboard's Continual page, on a database the store's
own code writes from hand-made accuracy matrices (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.continual.metrics import transfer
from suite.driver import plan
from suite.registry import Catalog
from suite.results import CellReport, ContinualMeasured, ContinualMeasurements
from suite.store.store import Store
from tests.test_continual import MATRIX, _write

# strategy -> (baseline b, the accuracy matrix R)
MADE = {
    "sequential": ([0.1, 0.3], [[0.8, 0.35], [0.5, 0.7]]),
    "per-task": ([0.1, 0.3], [[0.8, 0.3], [0.8, 0.75]]),
}


def _measured(cell, b, r) -> ContinualMeasured:
    gem = transfer(r, b)
    m = ContinualMeasurements(
        sequence=cell.sequence, metrics=["accuracy"] * 2, scores=r, baseline=b,
        avg_accuracy=gem.acc, bwt=gem.bwt, fwt=gem.fwt, trainable_params=1000,
        train_wall_s=1.0,
    )  # fmt: skip
    return ContinualMeasured(status="ok", measurements=m)


@pytest.fixture(scope="module")
def db(tiny_plugins, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("continual-board")
    store = Store(folder / "c.duckdb")
    the_plan = plan(Catalog.discover([tiny_plugins]), str(_write(folder, MATRIX)), store)
    store.init()
    for cell in the_plan.cells:
        b, r = MADE[cell.strategy]
        store.write_continual(cell, CellReport(measured=_measured(cell, b, r)), {}, None)
    return store.path


def test_the_store_keeps_the_matrix_with_the_baseline_as_stage_0(db):
    rows = Store(db).query(
        "SELECT stage, trained, task, value FROM continual_matrix WHERE strategy = 'sequential' "
        "ORDER BY stage, position"
    )
    assert list(rows["value"]) == [0.1, 0.3, 0.8, 0.35, 0.5, 0.7]
    assert list(rows["trained"])[2:] == ["drug-condition"] * 2 + ["drug-sentiment"] * 2
    bwt = Store(db).query("SELECT strategy, bwt FROM continual_results ORDER BY strategy")
    assert list(bwt["bwt"]) == pytest.approx([0.0, 0.5 - 0.8])


def test_the_continual_page(db, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PEFTBENCH_DB", str(db))
    app = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=120).run()
    at.switch_page("app_pages/continual.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.main.title] == ["Continual"]
    table = at.dataframe[0].value.set_index("Strategy")
    assert list(table.index) == ["per-task", "sequential"]  # best ACC first
    assert table.loc["per-task", "BWT"] == 0.0
    assert table.loc["sequential", "FWT"] == pytest.approx(0.35 - 0.3)
    assert table.loc["sequential", "Sequence"] == "drug-condition -> drug-sentiment"
    matrix = at.dataframe[1].value
    assert list(matrix["Stage"])[0] == "0. before training"
    assert list(matrix.columns) == ["Stage", "drug-condition", "drug-sentiment"]
