"""Benchmark protocols over a store's life: an older store's rows and post-hoc rows named on
upgrade, and a cell that two matrices share (one budget): each protocol lists it and
compares it with its own baseline."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import duckdb

from leaderboard import pagedata
from leaderboard.data import Reader
from suite.cells import expand
from suite.specs.budget import default_protocol
from suite.store.schema import CELL_RUN_COLUMNS
from suite.store.store import Store
from tests.helpers import catalog
from tests.support.demo import demo_predictions, demo_result
from tests.support.protocols import MINE, SHORT_BUDGET, matrix, write_matrix


def test_an_older_store_names_its_rows_protocols_on_upgrade(tmp_path):
    """Rows stored before protocols get the default their matrix and budget give today,
    so a rerun of that matrix lands beside them, and views group by it."""
    path = tmp_path / "old.duckdb"
    spec = matrix(budget=SHORT_BUDGET)
    store = Store(path)
    store.init()
    write_matrix(store, spec)
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
    write_matrix(store, other)
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
