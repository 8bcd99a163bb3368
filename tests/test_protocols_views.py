"""Benchmark protocols in one store holding two matrices of different budgets (issue 20's
reproduction: a user's short run of lora beside the league's): every row carries its
protocol, and no view, page, report or the app ranks, charts or compares the rows of two
protocols together; a protocol reads as its name and budget; a declared protocol refuses
another budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leaderboard import pagedata, report, saved
from leaderboard.data import Reader
from suite.store.protocols import LEAGUE_PROTOCOL, protocol_label, protocol_labels
from suite.store.store import Store
from tests.helpers import catalog
from tests.support.protocols import (
    LEAGUE_BUDGET,
    MINE,
    SHORT_BUDGET,
    matrix,
    write_matrix,
)

LEAGUE = dict(name="league", protocol=LEAGUE_PROTOCOL, budget=LEAGUE_BUDGET, seeds=[0, 1, 2])


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    """The league's head and lora (3 seeds), and a user's short run of both (2 seeds)."""
    store = Store(tmp_path_factory.mktemp("protocols") / "two.duckdb")
    store.init()
    write_matrix(store, matrix(**LEAGUE))
    write_matrix(store, matrix(budget=SHORT_BUDGET))
    return store.path


def test_every_row_carries_its_protocol(two):
    rows = Store(two).query("SELECT protocol, count(*) AS n FROM cell_runs GROUP BY ALL")
    assert dict(zip(rows["protocol"], rows["n"], strict=True)) == {LEAGUE_PROTOCOL: 6, MINE: 4}


def test_views_never_mix_protocols(two):
    store = Store(two)
    board = store.query('SELECT protocol, method, mean, n_seeds, "rank" FROM leaderboard')
    assert sorted(board["method"]) == ["head", "head", "lora", "lora"]
    assert not board.duplicated(["protocol", "method"]).any()  # once per protocol
    by = {(r.protocol, r.method): r for r in board.itertuples()}
    assert by[(LEAGUE_PROTOCOL, "lora")].n_seeds == 3 and by[(MINE, "lora")].n_seeds == 2
    assert by[(LEAGUE_PROTOCOL, "lora")].mean == pytest.approx(0.782)
    assert by[(LEAGUE_PROTOCOL, "lora")].rank == 1 and by[(MINE, "head")].rank == 1
    # Each protocol's front holds only its own points: the short lora (0.40) is not
    # dominated by the league's head, and the league's head stays on its own front.
    front = store.query(
        "SELECT protocol, method FROM pareto WHERE cost_axis = 'trainable_params' AND on_front"
    )
    assert sorted(map(tuple, front.to_numpy())) == sorted(
        [(LEAGUE_PROTOCOL, "head"), (LEAGUE_PROTOCOL, "lora"), (MINE, "head")]
    )
    # Comparisons with lora, the rank sweep, the aggregate, agreement: per protocol.
    cmp = store.query("SELECT protocol, method, vs_baseline FROM comparisons ORDER BY ALL")
    assert set(cmp["protocol"]) == {LEAGUE_PROTOCOL, MINE} and len(cmp) == 4
    for view in ("rank_sweep", "aggregate", "disagreements", "lost_to_baseline"):
        frame = store.query(f"SELECT * FROM {view}")
        assert "protocol" in frame.columns, view
    sweep = store.query("SELECT protocol, method FROM rank_sweep WHERE method = 'lora'")
    assert sorted(sweep["protocol"]) == sorted([LEAGUE_PROTOCOL, MINE])
    agg = store.query("SELECT protocol, method, n_tasks FROM aggregate")
    assert not agg.duplicated(["protocol", "method"]).any()
    proto = store.query("SELECT protocol, n_rows, seeds FROM protocols ORDER BY protocol")
    assert proto["protocol"].tolist() == sorted([LEAGUE_PROTOCOL, MINE])


def test_leaderboard_pages_show_one_protocol(two):
    reader = Reader(two)
    frame = pagedata.protocols(reader)
    assert pagedata.default_protocol(frame) == LEAGUE_PROTOCOL  # though it is not the only one
    words = dict(zip(frame["protocol"], frame["budget_words"], strict=True))
    assert words[LEAGUE_PROTOCOL] == (
        "3 epochs, batch 32, untuned (each method's default learning rate), 3 seeds"
    )
    assert words[MINE].startswith("1 epoch, at most 20 steps, batch 16")
    task, model = "drug-condition", "minilm-l6"
    for protocol, lora in ((None, 0.782), (LEAGUE_PROTOCOL, 0.782), (MINE, 0.404)):
        filters = pagedata.Filters(task, model, protocol=protocol)
        rows = pagedata.overview_data(reader, filters)
        assert sorted(rows["method"]) == ["head", "lora"], protocol
        assert rows.set_index("method").loc["lora", "mean"] == pytest.approx(lora)
        points = pagedata.pareto_data(reader, filters, "trainable_params")
        assert sorted(points["method"]) == ["head", "lora"]
        assert points["on_front"].sum() == (2 if lora > 0.5 else 1)
        agg = pagedata.overview_data(reader, pagedata.Filters(pagedata.ALL_TASKS, model,
                                                               protocol=protocol))  # fmt: skip
        assert sorted(agg["method"]) == ["head", "lora"]
        for name in ("lr", "seeds", "rank"):  # (no tuning trials here)
            found = saved.run_saved(reader, name, task, model, protocol).set_index("method")
            assert not found.index.duplicated().any(), name
            assert found.loc["lora", "mean"] == pytest.approx(lora), name
        assert len(pagedata.method_data(reader, "lora", protocol)["rows"]) == 1
        assert pagedata.methods(reader, protocol) == {"head": "head", "lora": "LoRA"}


def test_a_protocol_reads_as_its_name_and_budget_never_a_hex_tag(two):
    """Issue 23: "smoke@ec69163d" is shown as "smoke: ..." (the budget in words)."""
    budget = json.dumps({"epochs": 2.0, "batch_size": 32, "autocast": "bf16", "tokens": None})
    assert protocol_label({"protocol": LEAGUE_PROTOCOL, "budgets": [budget]}) == (
        "league-v1: 2 epochs, batch 32, bf16"
    )
    steps = json.dumps({"epochs": 1.0, "max_steps": 120, "batch_size": 16})
    assert protocol_label({"protocol": "smoke@ec69163d", "budgets": [steps]}) == (
        "smoke: 1 epoch, at most 120 steps, batch 16"
    )
    # Two protocols whose words read alike keep their ids apart.
    rows = [{"protocol": f"smoke@{t}", "budgets": [steps]} for t in ("aaaaaaaa", "bbbbbbbb")]
    assert protocol_labels(rows) == [
        "smoke: 1 epoch, at most 120 steps, batch 16 [smoke@aaaaaaaa]",
        "smoke: 1 epoch, at most 120 steps, batch 16 [smoke@bbbbbbbb]",
    ]
    labels = pagedata.protocol_names(Reader(two))
    assert labels[MINE] == "mine: 1 epoch, at most 20 steps, batch 16"
    assert labels[LEAGUE_PROTOCOL] == "league-v1: 3 epochs, batch 32"


def test_the_report_has_one_section_per_protocol(two):
    text = report.build_report(two)
    names = pagedata.protocol_names(Reader(two))
    league = text.index(f"Protocol {names[LEAGUE_PROTOCOL]}")
    mine = text.index(f"Protocol {names[MINE]}")
    assert MINE not in text  # the hex tag stays in the store
    assert league < mine  # the league opens the report
    assert text.count("drug-condition on minilm-l6") == 2


def test_the_default_is_the_protocol_with_most_rows_without_a_league(tmp_path):
    store = Store(tmp_path / "adhoc.duckdb")
    store.init()
    write_matrix(store, matrix(budget=SHORT_BUDGET))
    write_matrix(store, matrix(name="league", budget={"max_steps": 5}, methods=["head"], seeds=[0]))
    frame = pagedata.protocols(Reader(store.path))
    assert pagedata.default_protocol(frame) == MINE
    assert pagedata.default_protocol(frame.iloc[0:0]) is None


def test_a_declared_protocol_refuses_another_budget(two, tmp_path):
    from suite.driver import plan
    from suite.errors import SpecError

    def league_matrix(budget: str) -> str:
        path = tmp_path / "slice.yaml"
        path.write_text(
            "name: slice\nprotocol: league-v1\nmodels: [minilm-l6]\nmethods: [lora]\n"
            f"tasks: [drug-condition]\nseeds: [0]\nbudget: {budget}\n"
        )
        return str(path)

    with pytest.raises(SpecError) as caught:
        plan(catalog(), league_matrix("{max_steps: 5}"), Store(two))
    text = str(caught.value)
    assert "slice.yaml:2: protocol: protocol 'league-v1' is stored in" in text
    assert "'3 epochs, batch 32'" in text and "'1 epoch, at most 5 steps, batch 16'" in text
    assert "declare a new version of it (league-v1 -> league-v2)" in text
    # The league's own budget: a slice of it, whose cells are the league's.
    same = plan(catalog(), league_matrix("{epochs: 3, batch_size: 32}"), Store(two))
    assert same.todo == []


def test_the_app_opens_on_the_league_and_switches_protocol(two, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PEFTBENCH_DB", str(two))
    app = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")
    at = AppTest.from_file(app, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="protocol").value == LEAGUE_PROTOCOL
    # People read names and budgets; the stored id is in the tooltip only.
    shown = sorted(at.sidebar.selectbox(key="protocol").options)
    assert shown == ["league-v1: 3 epochs, batch 32", "mine: 1 epoch, at most 20 steps, batch 16"]
    assert not any(MINE in c.value for c in [*at.sidebar.caption, *at.caption, *at.markdown])
    assert any("3 epochs, batch 32" in c.value for c in at.sidebar.caption)
    table = at.dataframe[0].value
    assert sorted(table["Method"]) == ["LoRA", "head"]  # one lora: the league's
    assert float(table.set_index("Method").loc["LoRA", "Accuracy"]) == pytest.approx(0.782)
    at.sidebar.selectbox(key="protocol").select(MINE).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert sorted(table["Method"]) == ["LoRA", "head"]
    assert float(table.set_index("Method").loc["LoRA", "Accuracy"]) == pytest.approx(0.404)
    at.switch_page("app_pages/pareto.py").run()
    assert not at.exception, at.exception
    assert sorted(at.dataframe[0].value["Method"]) == ["LoRA", "head"]  # the chosen protocol's
