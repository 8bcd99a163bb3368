"""The store inserts rows by column name (suite/store/columns.py), never by position, and
keeps its run lock in a module of its own, importable where it always was."""

from __future__ import annotations

import duckdb

from suite.store.columns import insert_row, insert_rows
from suite.store.references import REFERENCE_COLUMNS, load_reference_files, reference_rows

COLUMNS = {"key": "VARCHAR PRIMARY KEY", "a": "INTEGER", "b": "VARCHAR"}


def _table():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (key VARCHAR PRIMARY KEY, a INTEGER, b VARCHAR)")
    return con


def test_rows_are_inserted_by_name_missing_columns_null():
    con = _table()
    insert_rows(con, "t", COLUMNS, [{"b": "x", "key": "k1"}, {"key": "k2", "a": 2, "extra": 0}])
    insert_rows(con, "t", COLUMNS, [])  # nothing to insert: no statement
    assert con.execute("SELECT * FROM t ORDER BY key").fetchall() == [
        ("k1", None, "x"),
        ("k2", 2, None),
    ]


def test_a_conflict_keeps_or_replaces_the_stored_row():
    con = _table()
    insert_row(con, "t", COLUMNS, {"key": "k", "a": 1})
    insert_row(con, "t", COLUMNS, {"key": "k", "a": 2}, conflict="IGNORE")
    assert con.execute("SELECT a FROM t").fetchall() == [(1,)]
    insert_rows(con, "t", COLUMNS, [{"key": "k", "a": 3}], conflict="REPLACE")
    assert con.execute("SELECT a FROM t").fetchall() == [(3,)]


def test_reference_rows_name_every_column():
    rows = reference_rows(load_reference_files())
    assert rows and all(set(row) == set(REFERENCE_COLUMNS) for row in rows)
    assert {row["measured"] for row in rows} == {False}


def test_the_run_lock_is_importable_where_it_always_was():
    from suite.store import lock, store

    assert store.RunLock is lock.RunLock and store.StoreBusy is lock.StoreBusy
