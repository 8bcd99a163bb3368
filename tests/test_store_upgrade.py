"""The store's file formats: an older store upgrades in place (new columns, the kept
latest-results table and the views), and `peftbench export --parquet` writes every
table's rows and columns as they are in the store."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import duckdb
import pyarrow.parquet as pq

from suite.store.schema import CELL_RUN_COLUMNS, SCHEMA_VERSION
from suite.store.store import Store
from tests.test_cli_e2e import cli
from tests.test_views import _row

# Columns schema version 3 (before fidelity, method versions, dtypes and memory baselines)
# did not have.
ADDED_IN_4 = {
    "fidelity", "method_version", "method_source_hash", "size_params", "base_dtype",
    "adapter_dtype", "memory_baseline_bytes", "cached_model_bytes",
}  # fmt: skip


def _old_store(path) -> None:
    con = duckdb.connect(str(path))
    columns = {k: v for k, v in CELL_RUN_COLUMNS.items() if k not in ADDED_IN_4}
    con.execute(
        "CREATE TABLE cell_runs (" + ", ".join(f"{k} {v}" for k, v in columns.items()) + ")"
    )
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    con.execute(
        "CREATE TABLE metrics (result_id VARCHAR NOT NULL, split VARCHAR NOT NULL, "
        "metric VARCHAR NOT NULL, value DOUBLE, version INTEGER, higher_is_better BOOLEAN)"
    )
    rid = uuid.uuid4().hex
    con.execute(
        "INSERT INTO cell_runs (result_id, cell_id, status, method, model, task, task_hash, "
        "method_hash, seed, profile, budget, primary_metric, higher_is_better, test_primary, "
        "phase, finished_at) VALUES (?, 'old-cell', 'ok', 'lora', 'tiny', 't', 'h', 'mh', 0, "
        "'cpu-local', ?, 'accuracy', true, 0.7, 'single', ?)",
        [rid, json.dumps({"epochs": 1}), datetime(2026, 1, 1)],
    )
    con.execute("INSERT INTO metrics VALUES (?, 'test', 'accuracy', 0.7, 1, true)", [rid])
    con.close()


def test_an_older_store_upgrades_in_place(tmp_path):
    path = tmp_path / "old.duckdb"
    _old_store(path)
    store = Store(path)
    store.init()
    with duckdb.connect(str(path), read_only=True) as con:
        have = {r[0] for r in con.execute("DESCRIBE cell_runs").fetchall()}
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        board = con.execute(
            "SELECT method, mean, method_version, fidelity, stale FROM leaderboard"
        ).fetchall()
        latest = con.execute("SELECT cell_id, test_accuracy FROM results").fetchall()
    assert ADDED_IN_4 <= have
    assert version == (str(SCHEMA_VERSION),)
    assert latest == [("old-cell", 0.7)]
    # An old row reads as version 1 with no fidelity label, and is current.
    assert board == [("lora", 0.7, 1, None, False)]
    with store.connect() as con:  # a new row after the upgrade, through the new columns
        _row(con, "lora", 1, 0.8, method_hash="mh", fidelity="reference", method_version=1)
    assert store.query("SELECT count(*) AS n FROM results")["n"][0] == 2


def test_parquet_export_holds_every_table_as_stored(tmp_path):
    store = Store(tmp_path / "e.duckdb")
    store.init()
    with store.connect() as con:
        for seed, value in enumerate([0.5, 0.6, 0.7]):
            _row(con, "lora", seed, value, fidelity="reference", size_params=["r"])
    out = tmp_path / "pq"
    run = cli("export", "--parquet", str(out), "--db", str(store.path))
    assert run.returncode == 0, run.stderr
    with duckdb.connect(str(store.path), read_only=True) as con:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
        ).fetchall()]  # fmt: skip
        for name in tables:
            stored = con.execute(f'SELECT * FROM "{name}"').to_arrow_table()
            exported = pq.read_table(out / f"{name}.parquet")
            assert exported.column_names == stored.column_names, name
            assert exported.num_rows == stored.num_rows, name
            key = stored.column_names[0]
            assert sorted(map(str, exported.column(key).to_pylist())) == sorted(
                map(str, stored.column(key).to_pylist())
            ), name
    runs = pq.read_table(out / "cell_runs.parquet").to_pydict()
    assert sorted(runs["test_primary"]) == [0.5, 0.6, 0.7]
    assert set(runs["fidelity"]) == {"reference"} and runs["size_params"][0] == ["r"]
