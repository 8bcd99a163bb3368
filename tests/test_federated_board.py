"""The federated store and the leaderboard's Federated page, on a database the store's
own code writes from hand-made rounds (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.driver import plan
from suite.registry import Catalog
from suite.results import CellReport, FederatedMeasured, FederatedMeasurements
from suite.store.store import Store
from tests.test_federated_run import write_matrix

# rule -> test score after rounds 0..3; bytes per round: FedSVD's clients send B only.
MADE = {"fedavg": [0.1, 0.2, 0.3, 0.35], "fedsvd": [0.1, 0.25, 0.4, 0.5]}
UP = {"fedavg": 100, "fedsvd": 60}
MAJORITY = 0.15  # the task's majority class on test
# A training round's 3 clients, 1.5 CPU seconds each, in parallel within its 2 s wall.
CLIENTS_CPU_S = 3 * 1.5


def _measured(cell) -> FederatedMeasured:
    k, rule = cell.round, cell.spec.aggregation
    m = FederatedMeasurements(
        fed_run=cell.fed_run, round=k, metric="accuracy", validation_score=MADE[rule][k] - 0.05,
        test_score=MADE[rule][k], clients=3 if k else 0, bytes_up=UP[rule] if k else 0,
        bytes_down=100 if k else 0, client_sizes=[5, 3, 2] if k == 0 else [],
        baseline_test_score=MAJORITY, label_skew=0.25 if k == 0 else None,
        clients_cpu_s=CLIENTS_CPU_S if k else 0.0, server_cpu_s=0.5 if k else 2.0,
    )  # fmt: skip
    return FederatedMeasured(status="ok", measurements=m, cell_wall_s=2.0)


@pytest.fixture(scope="module")
def db(tiny_plugins, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("federated-board")
    store = Store(folder / "f.duckdb")
    the_plan = plan(Catalog.discover([tiny_plugins]), str(write_matrix(folder)), store)
    store.init()
    for cell in the_plan.cells:
        store.write_federated(cell, CellReport(measured=_measured(cell)), {}, None)
    return store.path


def test_the_curve_counts_bytes_up_to_each_round_and_the_results_keep_the_last(db):
    curve = Store(db).query(
        "SELECT aggregation, round, bytes_total, wall_s_total FROM federated_curve "
        "WHERE aggregation = 'fedsvd' ORDER BY round"
    )
    assert list(curve["bytes_total"]) == [0, 160, 320, 480]
    assert list(curve["wall_s_total"]) == [2.0, 4.0, 6.0, 8.0]
    last = Store(db).query(
        "SELECT aggregation, rounds_done, complete, test_score, alpha, split "
        "FROM federated_results ORDER BY aggregation"
    )
    assert list(last["rounds_done"]) == [3, 3] and list(last["complete"]) == [True, True]
    assert list(last["test_score"]) == [0.35, 0.5]
    assert set(last["split"]) == {"dirichlet"} and set(last["alpha"]) == {0.5}


def test_the_federated_page(db, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PEFTBENCH_DB", str(db))
    app = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=120).run()
    at.switch_page("app_pages/federated.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.main.title] == ["Federated"]
    table = at.dataframe[0].value.set_index("Aggregation")
    assert list(table.index) == ["fedsvd", "fedavg"]  # best test score first
    assert table.loc["fedsvd", "Test score"] == "0.5000"
    assert set(table["Method"]) == {"LoRA"}  # as its paper writes it; the rows keep `lora`
    # Read against the majority class; units and words, not the store's column names.
    assert table.loc["fedsvd", "Majority class (test)"] == "0.1500"
    assert table.loc["fedavg", "Communicated (up + down)"] == "600 B"
    assert table.loc["fedsvd", "Client split"] == "Dirichlet, alpha 0.5"
    assert table.loc["fedsvd", "Differential privacy"] == "none"
    assert table.loc["fedsvd", "Wall time"] == "8 s"
    assert table.loc["fedsvd", "Label skew"] == "0.2500"
    assert not [c for c in table.columns if "_" in c or c.lower() == c]
    assert [s.value for s in at.main.subheader] == [
        "Test score against rounds",
        "Test score against bytes communicated",
    ]


def test_the_curves_draw_the_majority_class_and_name_the_metric(db):
    from leaderboard.data import Reader
    from leaderboard.federated import curve_chart, federated_curves

    spec = curve_chart(federated_curves(Reader(db)), "round", "Round").to_dict()
    lines, rule, text = spec["layer"]
    assert lines["encoding"]["y"]["title"] == "Test accuracy"
    assert rule["mark"]["type"] == "rule" and rule["mark"]["strokeDash"] == [6, 4]
    values = spec["datasets"][text["data"]["name"]]
    assert [v["majority"] for v in values] == [MAJORITY]
    assert "majority class" in values[0]["text"]
    # Whole rounds on the axis, and the legend's labels whole (not cut at 200 pixels).
    assert lines["encoding"]["x"]["axis"] == {"format": "d", "tickMinStep": 1}
    assert lines["encoding"]["color"]["legend"]["labelLimit"] == 0


def test_differential_privacy_in_words():
    from leaderboard.federated import dp_words

    assert dp_words(None) == "none"
    assert dp_words('{"max_grad_norm": 2.0, "noise_multiplier": 1.0}') == "clip 2, noise 1"
