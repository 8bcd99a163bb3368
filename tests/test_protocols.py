"""Benchmark protocols: how a matrix names one, that it is stored on every row (older
stores included), and that no view, page or report ranks, charts or compares the rows
of two protocols together (issue 20's reproduction: a user's short run of lora beside
the league's)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from pydantic import ValidationError

from leaderboard import pagedata, report, saved
from leaderboard.data import Reader
from suite.cells import expand
from suite.specs.budget import budget_tag, default_protocol
from suite.specs.matrix import MatrixSpec
from suite.store.protocols import (
    LEAGUE_PROTOCOL,
    budget_words,
    protocol_label,
    protocol_labels,
)
from suite.store.schema import CELL_RUN_COLUMNS
from suite.store.store import Store
from tests.helpers import catalog
from tests.support.demo import demo_predictions, demo_result

LEAGUE_BUDGET = {"epochs": 3, "batch_size": 32}
SHORT_BUDGET = {"max_steps": 20, "batch_size": 16, "warmup_ratio": 0.1}


def matrix(**over) -> MatrixSpec:
    base = dict(
        name="mine",
        models=["minilm-l6"],
        methods=["head", "lora"],
        tasks=["drug-condition"],
        seeds=[0, 1],
    )
    return MatrixSpec.model_validate({**base, **over})


# --- the spec ---------------------------------------------------------------------------


def test_a_matrix_without_a_protocol_is_named_after_itself_and_its_budget():
    plain = matrix(budget=SHORT_BUDGET)
    tag = budget_tag(plain.budget.model_dump(mode="json"))
    assert plain.protocol_name == f"mine@{tag}" and len(tag) == 8
    # Another budget, another protocol; a description or seed change keeps it.
    assert matrix(budget=LEAGUE_BUDGET).protocol_name != plain.protocol_name
    assert matrix(budget=SHORT_BUDGET, seeds=[0, 1, 2], description="x").protocol_name == (
        plain.protocol_name
    )
    # The tag reads the budget's set fields only, so a row's stored JSON (unset fields as
    # null) names the same protocol.
    stored = json.loads(plain.budget.model_dump_json())
    assert None in stored.values() and default_protocol("mine", stored) == plain.protocol_name


def test_a_declared_protocol_is_shared_and_enters_the_cell_id():
    league = matrix(name="league", protocol="league-v1", budget=LEAGUE_BUDGET)
    smoke = matrix(name="smoke", protocol="league-v1", budget=LEAGUE_BUDGET, seeds=[0])
    adhoc = matrix(name="league", budget=LEAGUE_BUDGET)
    assert league.protocol_name == smoke.protocol_name == "league-v1"
    ids = {c.cell_id for c in expand(league, catalog())}
    # A slice of the league (make run, later) has the league's cells...
    assert {c.cell_id for c in expand(smoke, catalog())} <= ids
    # ...and an ad-hoc matrix with the same cells runs its own, in its own protocol.
    assert not ids & {c.cell_id for c in expand(adhoc, catalog())}
    cell = expand(adhoc, catalog())[0]
    assert cell.protocol is None and cell.protocol_name == adhoc.protocol_name


def test_an_undeclared_protocol_keeps_older_cell_ids():
    """Unset, the protocol stays out of the hash (tests/test_expand.py pins the builtin
    matrices' ids); the matrix name never enters it."""
    a, b = expand(matrix(), catalog())[0], expand(matrix(name="other"), catalog())[0]
    assert a.cell_id == b.cell_id and a.protocol_name != b.protocol_name


@pytest.mark.parametrize("bad", ["League-v1", "league v1", "mine@1234abcd", "", "-x"])
def test_bad_protocol_names_are_refused(bad):
    with pytest.raises(ValidationError, match="expected a lower-case name"):
        matrix(protocol=bad)


def test_budget_in_words():
    tuning = {"trials": 4, "sampler": "random", "seed": 0}
    assert budget_words(LEAGUE_BUDGET, tuning, [0, 1, 2]) == (
        "3 epochs, batch 32, lr tuned over 4 trials on validation, 3 seeds"
    )
    assert budget_words({"epochs": 1.0, **SHORT_BUDGET}, None, [0]) == (
        "1 epoch, at most 20 steps, batch 16, untuned (each method's default learning rate), 1 seed"
    )
    assert budget_words({"tokens": 204800, "batch_size": 8}, None, [0, 1]).startswith(
        "204,800 training tokens, batch 8"
    )


# --- the store: two matrices of different budgets ---------------------------------------

# Issue 20: the league's lora at 0.778 and a user's 20-step lora at the majority class.
QUALITY = {("league", "head"): 0.751, ("league", "lora"): 0.778, ("mine", "head"): 0.41,
           ("mine", "lora"): 0.402}  # fmt: skip


def _write(store: Store, spec: MatrixSpec) -> None:
    for cell in expand(spec, catalog()):
        acc = QUALITY[(spec.name, cell.method.label)] + 0.004 * cell.seed
        task = cell.task.name
        result = demo_result(cell).model_copy(
            update={
                "test_metrics": {"accuracy": acc, "macro_f1": acc - 0.2},
                "predictions": {"test": demo_predictions(task, cell.method.label, cell.seed, acc)},
                "trainable_params": {"head": 3_850, "lora": 40_000}[cell.method.label],
            }
        )
        store.write(cell, result, {"run_id": spec.name})


LEAGUE = dict(name="league", protocol=LEAGUE_PROTOCOL, budget=LEAGUE_BUDGET, seeds=[0, 1, 2])


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    """The league's head and lora (3 seeds), and a user's short run of both (2 seeds)."""
    store = Store(tmp_path_factory.mktemp("protocols") / "two.duckdb")
    store.init()
    _write(store, matrix(**LEAGUE))
    _write(store, matrix(budget=SHORT_BUDGET))
    return store.path


MINE = matrix(budget=SHORT_BUDGET).protocol_name


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
    _write(store, matrix(budget=SHORT_BUDGET))
    _write(store, matrix(name="league", budget={"max_steps": 5}, methods=["head"], seeds=[0]))
    frame = pagedata.protocols(Reader(store.path))
    assert pagedata.default_protocol(frame) == MINE
    assert pagedata.default_protocol(frame.iloc[0:0]) is None


# --- an older store ---------------------------------------------------------------------


def test_an_older_store_names_its_rows_protocols_on_upgrade(tmp_path):
    """Rows stored before protocols get the default their matrix and budget give today,
    so a rerun of that matrix lands beside them, and views group by it."""
    path = tmp_path / "old.duckdb"
    spec = matrix(budget=SHORT_BUDGET)
    store = Store(path)
    store.init()
    _write(store, spec)
    with duckdb.connect(str(path)) as con:  # as schema version 5 left it
        con.execute("DROP INDEX cell_runs_by_cell")
        con.execute("ALTER TABLE cell_runs DROP COLUMN protocol")
        con.execute("DROP TABLE comparisons")
        con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
        cols = [c for c in CELL_RUN_COLUMNS if c != "protocol"]
        con.execute(
            f"INSERT INTO cell_runs ({', '.join(cols)}) SELECT {', '.join(cols)} "
            "FROM (SELECT * REPLACE (? AS result_id, 'legacy' AS matrix, ? AS cell_id, "
            "? AS finished_at) FROM cell_runs LIMIT 1)",
            [uuid.uuid4().hex, "legacy-cell", datetime(2026, 1, 1)],
        )
    assert Store(path).upgrade_if_older()
    assert not Store(path).upgrade_if_older()  # once
    rows = store.query("SELECT matrix, protocol FROM cell_runs ORDER BY matrix")
    budget = json.loads(expand(spec, catalog())[0].budget.model_dump_json())
    assert dict(zip(rows["matrix"], rows["protocol"], strict=False)) == {
        "legacy": default_protocol("legacy", budget),
        "mine": spec.protocol_name,
    }
    board = store.query("SELECT protocol, method, n_seeds FROM leaderboard")
    assert set(board["protocol"]) == {spec.protocol_name, default_protocol("legacy", budget)}
    assert store.query("SELECT count(*) AS n FROM comparisons WHERE protocol IS NULL")["n"][0] == 0


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


def test_post_hoc_rows_carry_their_inputs_protocol(tmp_path):
    """Merges and compressions are in the protocol of the trained cells they read; an
    older store's post-hoc rows get it from their first input's row on upgrade."""
    from tests.support.demo import demo_db_copy

    path = demo_db_copy(tmp_path / "demo.duckdb")
    store = Store(path)
    written = store.query(
        "SELECT DISTINCT protocol FROM merging UNION SELECT protocol FROM compression"
    )
    trained = store.query("SELECT DISTINCT protocol FROM cell_runs")
    assert written["protocol"].tolist() == trained["protocol"].tolist() and len(trained) == 1
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE posthoc_runs SET protocol = NULL")
        con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    assert store.upgrade_if_older()
    again = store.query("SELECT DISTINCT protocol FROM posthoc_runs")
    assert again["protocol"].tolist() == trained["protocol"].tolist()


def test_a_cell_another_matrix_stored_counts_for_this_protocol_too(tmp_path):
    """Issue 23: two ad-hoc matrices with one budget share cell ids (their default protocols
    stay out of the id), so `mine` finds the other one's lora stored and skips it; its
    protocol still lists lora (`protocol_cells`), and the other protocol keeps it."""
    from suite.driver import in_process_executor, plan, run_plan

    store = Store(tmp_path / "shared.duckdb")
    store.init()
    with duckdb.connect(str(store.path)) as con:  # a store of schema 6: no membership yet
        con.execute("DROP VIEW protocol_results")
        con.execute("DROP TABLE protocol_cells")
        con.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    assert store.upgrade_if_older()  # in place, as the leaderboard opens it
    other = matrix(name="league", budget=SHORT_BUDGET)  # an ad-hoc "league@<tag>"
    _write(store, other)
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nmodels: [minilm-l6]\nmethods: [lora]\ntasks: [drug-condition]\n"
        "seeds: [0, 1]\nbudget: {max_steps: 20, batch_size: 16, warmup_ratio: 0.1}\n"
    )
    mine = plan(catalog(), str(path), store)
    assert mine.todo == [] and len(mine.cells) == 2  # both seeds stored by the other
    run_plan(mine, store, in_process_executor(results_dir=tmp_path))
    board = store.query("SELECT protocol, method, n_seeds, mean, vs_baseline FROM leaderboard")
    by = {(r.protocol, r.method): r for r in board.itertuples()}
    assert sorted(by) == sorted(
        [(MINE, "lora"), (other.protocol_name, "head"), (other.protocol_name, "lora")]
    )
    assert by[(MINE, "lora")].n_seeds == 2
    assert by[(MINE, "lora")].mean == by[(other.protocol_name, "lora")].mean
    assert store.query("SELECT count(*) AS n FROM comparisons WHERE protocol = ?", [MINE])["n"][0]
    assert MINE in set(store.query("SELECT protocol FROM protocols")["protocol"])
    assert list(pagedata.methods(Reader(store.path), MINE)) == ["lora"]
    spec = pagedata.method_data(Reader(store.path), "lora", MINE)["spec"]
    assert len(spec) == 1  # the Method page finds its YAML
    assert len(store.query("SELECT * FROM results")) == 4  # one latest row per cell


def _write_cells(store: Store, cells, quality: dict[str, float]) -> None:
    for cell in cells:
        acc = quality[cell.method.label] + 0.004 * cell.seed
        result = demo_result(cell).model_copy(
            update={
                "test_metrics": {"accuracy": acc, "macro_f1": acc - 0.2},
                "predictions": {
                    "test": demo_predictions(cell.task.name, cell.method.label, cell.seed, acc)
                },
            }
        )
        store.write(cell, result, {"run_id": cell.matrix})


def test_a_borrowed_row_is_compared_with_the_borrowing_protocols_baseline(tmp_path):
    """Two ad-hoc matrices share their cells (same budget) but not their baseline method
    (`optimizers` compares with full, `lowrank` with lora). The rows read under each
    protocol carry that protocol's baseline; a rerun by one never rewrites the other's."""
    store = Store(tmp_path / "shared.duckdb")
    store.init()
    theirs = expand(matrix(name="theirs", budget=SHORT_BUDGET, baseline_method="head"), catalog())
    mine = expand(matrix(name="mine", budget=SHORT_BUDGET, baseline_method="lora"), catalog())
    assert [c.cell_id for c in theirs] == [c.cell_id for c in mine]  # one cell each
    _write_cells(store, theirs, {"head": 0.75, "lora": 0.78})
    store.join_protocols(mine)  # `mine` finds them stored and borrows them

    def board(protocol: str) -> dict[str, tuple]:
        rows = store.query(
            "SELECT method, baseline_method, vs_baseline FROM leaderboard WHERE protocol = ?",
            [protocol],
        )
        return {r.method: (r.baseline_method, r.vs_baseline) for r in rows.itertuples()}

    their_protocol, my_protocol = theirs[0].protocol_name, mine[0].protocol_name
    assert board(my_protocol)["lora"] == ("lora", "baseline")
    assert board(my_protocol)["head"][0] == "lora" and board(my_protocol)["head"][1] != "baseline"
    assert board(their_protocol)["head"] == ("head", "baseline")
    assert board(their_protocol)["lora"][0] == "head"
    # `mine` reruns its lora: the latest row is its own, and `theirs` still reads head.
    _write_cells(store, [c for c in mine if c.method.label == "lora"], {"lora": 0.78})
    assert board(their_protocol)["head"] == ("head", "baseline")
    assert board(their_protocol)["lora"][0] == "head"
    assert board(my_protocol)["lora"] == ("lora", "baseline")
    # A run of schema-7 code (started before the upgrade) still records its memberships.
    with duckdb.connect(str(store.path)) as con:
        con.execute("INSERT INTO protocol_cells VALUES ('older@x', ?)", [mine[0].cell_id])
