"""Security of the Ablations page's SQL box: only one read-only SELECT ever runs, it can
reach no file but the database, and the database is byte-for-byte unchanged afterwards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from leaderboard import sqlbox
from tests.support.demo import demo_db_copy


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return demo_db_copy(tmp_path_factory.mktemp("sql") / "demo.duckdb")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _counts(path: Path) -> tuple:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return tuple(
            (t, con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in sorted(tables)
        )
    finally:
        con.close()


def _attacks(tmp: Path) -> list[str]:
    out = tmp / "stolen.csv"
    return [
        "DROP TABLE cell_runs",
        "DROP VIEW leaderboard",
        "DELETE FROM cell_runs",
        "INSERT INTO meta VALUES ('x', 'y')",
        "UPDATE cell_runs SET status = 'ok'",
        "CREATE TABLE evil AS SELECT 1",
        f"ATTACH '{tmp / 'other.duckdb'}' AS other",
        f"COPY cell_runs TO '{out}'",
        f"COPY (SELECT * FROM cell_runs) TO '{out}' (FORMAT csv)",
        f"EXPORT DATABASE '{tmp / 'dump'}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA enable_profiling",
        "CALL checkpoint()",
        "SELECT 1; DROP TABLE cell_runs",
        "SELECT 1; SELECT 2",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv_auto('/etc/passwd', header = false)",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_json('/etc/passwd')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM query('DROP TABLE cell_runs')",
        "SELECT * FROM query_table('/etc/passwd')",
    ]


def test_sql_box_refuses_writes_files_and_extensions(db, tmp_path):
    before_bytes, before_counts = _digest(db), _counts(db)
    for attack in _attacks(tmp_path):
        with pytest.raises((sqlbox.Refused, duckdb.Error)) as caught:
            sqlbox.run(db, attack)
        assert "root:" not in str(caught.value), attack  # nothing of /etc/passwd leaks
    assert _digest(db) == before_bytes
    assert _counts(db) == before_counts
    assert not (tmp_path / "stolen.csv").exists()
    assert not (tmp_path / "other.duckdb").exists()
    assert not (tmp_path / "dump").exists()


def test_refusals_name_the_reason(db):
    with pytest.raises(sqlbox.Refused, match="one statement"):
        sqlbox.run(db, "SELECT 1; SELECT 2")
    with pytest.raises(sqlbox.Refused, match="DROP"):
        sqlbox.run(db, "DROP TABLE cell_runs")
    with pytest.raises(sqlbox.Refused, match="COPY"):
        sqlbox.run(db, "COPY cell_runs TO 'x.csv'")
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        sqlbox.run(db, "SELECT * FROM read_csv('/etc/passwd')")


def test_select_runs_with_a_row_cap(db):
    answer = sqlbox.run(db, "SELECT method, mean FROM leaderboard ORDER BY method")
    assert not answer.truncated and len(answer.frame) > 5
    capped = sqlbox.run(db, "SELECT * FROM range(100000) -- trailing comment", row_cap=50)
    assert capped.truncated and len(capped.frame) == 50
    locked = sqlbox.run(
        db, "SELECT value FROM duckdb_settings() WHERE name = 'enable_external_access'"
    )
    assert locked.frame["value"].iloc[0] == "false"
