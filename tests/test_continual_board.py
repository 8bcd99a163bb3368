"""The continual store and the leaderboard's Continual page, on a database the store's
own code writes from hand-made accuracy matrices (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.continual.metrics import transfer
from suite.driver import plan
from suite.registry import Catalog
from suite.results import CellReport, ContinualMeasured, ContinualMeasurements
from suite.store.continual import CONTINUAL_VIEWS
from suite.store.store import Store
from tests.test_continual import MATRIX, _write

# strategy -> (baseline b, the accuracy matrix R)
MADE = {
    "sequential": ([0.1, 0.3], [[0.8, 0.35], [0.5, 0.7]]),
    "per-task": ([0.1, 0.3], [[0.8, 0.3], [0.8, 0.75]]),
}
MAJORITY = [0.4, 0.65]  # each task's majority class on the examples scored


def _measured(cell, b, r) -> ContinualMeasured:
    gem = transfer(r, b)
    m = ContinualMeasurements(
        sequence=cell.sequence, metrics=["accuracy"] * 2, scores=r, baseline=b,
        avg_accuracy=gem.acc, bwt=gem.bwt, fwt=gem.fwt, trainable_params=1000,
        train_wall_s=75.0, task_baselines=MAJORITY,
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
    assert table.loc["per-task", "Backward transfer (BWT)"] == "0.0000"
    assert set(table["Method"]) == {"LoRA"}  # as its paper writes it; the rows keep `lora`
    assert table.loc["sequential", "Forward transfer (FWT)"] == f"{0.35 - 0.3:.4f}"
    assert table.loc["sequential", "Sequence"] == "drug-condition -> drug-sentiment"
    # Read against the majority class; units and words, not the store's column names.
    assert table.loc["sequential", "ACC of the majority class"] == "0.5250"
    assert table.loc["sequential", "Train time"] == "1 min 15 s"
    assert table.loc["sequential", "Trainable params"] == "1,000"
    assert not [c for c in table.columns if "_" in c or c.lower() == c]
    matrix = at.dataframe[1].value
    assert list(matrix["Stage"]) == [
        "0. before training", "1. after drug-condition", "2. after drug-sentiment",
        "majority class",
    ]  # fmt: skip
    assert list(matrix.columns) == ["Stage", "drug-condition", "drug-sentiment"]
    assert list(matrix.iloc[-1])[1:] == ["0.4000", "0.6500"]
    assert list(matrix.iloc[1])[1:] == ["0.8000", "0.3000"]  # per-task, the first cell listed
    # The sidebar counts what the store holds (it said "0 cell runs" here).
    said = " ".join(c.value for c in at.sidebar.caption)
    assert "(no training cells; 2 continual runs; newest result 20" in said, said


def test_the_freshness_note_counts_every_kind_of_run():
    from datetime import UTC, datetime

    from leaderboard.data import Freshness

    at = datetime(2026, 1, 1, tzinfo=UTC)

    def said(cells: int, **others: int) -> str:
        return Freshness(at, None, cells, False, others).describe(now=at)

    assert said(0) == "Data read 0 s ago (0 cell runs; newest result none)."
    assert "(12 cell runs; newest" in said(12)
    assert "(12 cell runs; 3 continual / 1 federated runs; newest" in said(
        12, continual=3, federated=1
    )
    assert "(no training cells; 1 federated run; newest" in said(0, federated=1)


def test_a_store_older_than_the_majority_class_shows_none(db, tmp_path):
    """Rows written before `task_baselines` existed: the page's reads still work."""
    import duckdb

    from leaderboard.continual import accuracy_matrix, continual_rows
    from leaderboard.data import Reader

    old = tmp_path / "old.duckdb"
    old.write_bytes(Path(db).read_bytes())
    con = duckdb.connect(str(old))
    con.execute("ALTER TABLE continual_runs DROP COLUMN task_baselines")
    con.execute(CONTINUAL_VIEWS[0])
    con.close()
    reader = Reader(old)
    rows = continual_rows(reader)
    assert rows["majority_acc"].isna().all()
    assert "majority class" not in list(accuracy_matrix(reader, rows["cell_id"].iloc[0])["Stage"])
