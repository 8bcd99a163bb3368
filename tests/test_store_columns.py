"""The store's row columns come from the result types (suite/store/columns.py): a field
added to a result type is a column, appended after today's, and an older store gains it
in place; a field that is not a column says where it goes instead."""

from __future__ import annotations

import pytest

from suite.results import CellResult, Measurements, PosthocMeasurements
from suite.store import store as store_module
from suite.store.columns import layout, result_columns
from suite.store.posthoc import POSTHOC_RUN_COLUMNS, POSTHOC_RUN_LAYOUT
from suite.store.schema import CELL_RUN_COLUMNS, CELL_RUN_LAYOUT
from suite.store.store import Store
from tests.support.demo import demo_cells, demo_db_copy, demo_result

PROVENANCE = {"versions": {}, "git_sha": "t", "git_dirty": False, "hardware": {}, "run_id": "t"}


class Wider(CellResult):
    """CellResult as if Measurements had gained a field."""

    tokens_wasted: int | None = None


def test_types_and_markers_set_the_columns():
    measured = result_columns(Measurements)
    assert measured["train_steps"] == "INTEGER"  # Int32: the width older stores have
    assert measured["trainable_params"] == "BIGINT"
    assert measured["loss_curve"] == "DOUBLE[]"
    # Elsewhere: metrics, baselines and the artifact have tables of their own.
    for name in ("val_metrics", "baseline_test", "artifact_sha256", "predictions"):
        assert name not in measured
    assert result_columns(CellResult)["status"] == "VARCHAR NOT NULL"
    assert "scores" not in result_columns(PosthocMeasurements)
    assert POSTHOC_RUN_COLUMNS["input_sha256"] == "VARCHAR[]"


def test_a_new_field_is_appended_after_todays_columns():
    wider = layout(CELL_RUN_LAYOUT, Wider)
    assert list(wider)[:-1] == list(CELL_RUN_COLUMNS)  # today's order kept
    assert list(wider.items())[-1] == ("tokens_wasted", "BIGINT")

    class WiderPosthoc(PosthocMeasurements):
        blocks_pruned: int | None = None

    posthoc = layout(POSTHOC_RUN_LAYOUT, WiderPosthoc)
    assert list(posthoc) == [*POSTHOC_RUN_COLUMNS, "blocks_pruned"]


def test_an_older_store_gains_the_new_column_and_stores_it(tmp_path, monkeypatch):
    store = Store(demo_db_copy(tmp_path / "d.duckdb"))
    assert not store.upgrade_if_older()  # current: only read
    monkeypatch.setattr(store_module, "CELL_RUN_COLUMNS", layout(CELL_RUN_LAYOUT, Wider))
    assert store.upgrade_if_older()  # it lacks a column the result type now has
    cell = demo_cells()[0]
    plain = demo_result(cell)
    wider = Wider(**plain.model_dump(), predictions=plain.predictions, tokens_wasted=7)
    store.write(cell, wider, PROVENANCE)
    found = store.query(
        "SELECT tokens_wasted FROM results WHERE cell_id = ?", [cell.cell_id]
    ).tokens_wasted
    assert list(found) == [7]


def test_a_field_with_no_sql_type_is_refused():
    class Odd(Measurements):
        blob: bytes | None = None

    with pytest.raises(TypeError, match="no SQL type for .*bytes.*SqlType"):
        result_columns(Odd)


def test_a_layout_naming_a_missing_field_is_refused():
    with pytest.raises(ValueError, match="'gone' is not a stored field of Measurements"):
        layout(("gone",), Measurements)


def test_attempt_tables_share_their_key_method_and_provenance_columns(tmp_path):
    """posthoc_runs, continual_runs and federated_rounds are laid out by one helper
    (suite/store/columns.py): the columns they share have one type, and a post-hoc
    attempt written through the store fills its provenance and method columns."""
    store = Store(demo_db_copy(tmp_path / "d.duckdb"))
    shared = ("result_id", "cell_id", "run_id", "status", "error", "matrix", "method",
              "method_name", "family", "fidelity", "params", "hostname", "worker_pid",
              "hardware_profile_id", "started_at", "finished_at", "cell_wall_s", "attempts",
              "git_sha", "git_dirty", "log_path")  # fmt: skip
    types = store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_name IN ('posthoc_runs', 'continual_runs', 'federated_rounds')"
    )
    for name in shared:
        found = types[types.column_name == name]
        assert len(found) == 3 and found.data_type.nunique() == 1, name
    rows = store.query(
        "SELECT run_id, git_sha, attempts, method_hash, method_yaml, finished_at FROM posthoc_runs"
    )
    assert len(rows) and set(rows.run_id) == {"demo"} and set(rows.git_sha) == {"demo"}
    assert rows.method_hash.notna().all() and rows.method_yaml.notna().all()
    assert set(rows.attempts) == {1} and rows.finished_at.notna().all()
