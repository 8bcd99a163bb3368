"""`latest_results`, kept cell by cell on write, equals the full latest-attempt query."""

from __future__ import annotations

import pandas as pd

from suite.store.schema import RESULTS_SELECT, latest_is_current
from suite.store.store import Store
from tests.support.demo import demo_cells, demo_db_copy, demo_result

PROVENANCE = {"versions": {}, "git_sha": "t", "git_dirty": False, "hardware": {}, "run_id": "t"}


def _frames(store: Store) -> tuple[pd.DataFrame, pd.DataFrame]:
    with store.connect(read_only=True) as con:
        kept = con.execute("SELECT * FROM results ORDER BY cell_id").df()
        full = con.execute(f"SELECT * FROM ({RESULTS_SELECT}) ORDER BY cell_id").df()
    return kept, full


def test_kept_table_equals_the_full_query_after_new_attempts(tmp_path):
    store = Store(demo_db_copy(tmp_path / "d.duckdb"))
    cells = demo_cells()[:3]
    # A later failed attempt replaces an ok one; a later ok attempt then replaces that.
    failed = demo_result(cells[0]).model_copy(update={"status": "failed", "error": "boom"})
    store.write(cells[0], failed, PROVENANCE)
    store.write(
        cells[1], demo_result(cells[1]).model_copy(update={"status": "timeout"}), PROVENANCE
    )
    store.write(cells[1], demo_result(cells[1]), PROVENANCE)
    kept, full = _frames(store)
    assert len(kept) == len(full) == len(demo_cells())
    pd.testing.assert_frame_equal(kept, full)
    by_cell = kept.set_index("cell_id")
    assert by_cell.loc[cells[0].cell_id, "status"] == "failed"
    assert by_cell.loc[cells[1].cell_id, "status"] == "ok"
    assert (
        by_cell.loc[cells[1].cell_id, "test_accuracy"]
        == kept.set_index("cell_id").loc[cells[1].cell_id, "test_primary"]
    )


def test_init_rebuilds_a_missing_or_stale_table(tmp_path):
    store = Store(demo_db_copy(tmp_path / "d.duckdb"))
    with store.connect() as con:
        con.execute("DROP VIEW results")
        con.execute("DROP TABLE latest_results")  # a database from before the table
        assert not latest_is_current(con)
    store.init()
    kept, full = _frames(store)
    pd.testing.assert_frame_equal(kept, full)
    with store.connect() as con:
        con.execute(
            "DELETE FROM latest_results WHERE cell_id IN (SELECT cell_id FROM latest_results LIMIT 2)"
        )
        assert not latest_is_current(con)  # rows inserted behind the store's back
    store.init()
    kept, full = _frames(store)
    pd.testing.assert_frame_equal(kept, full)
