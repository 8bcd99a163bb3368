"""The Ablations page's free SQL box: one SELECT, on a locked-down read-only connection.

Security does not rest on string filtering. Four independent layers:
1. DuckDB's own parser (`duckdb.extract_statements`) must find exactly one statement,
   and it must be a SELECT: DROP, INSERT, ATTACH, COPY, INSTALL, LOAD, SET, PRAGMA, CALL
   and EXPLAIN are refused before anything runs.
2. The connection is read-only, so even a statement that slipped through cannot write.
3. `enable_external_access=false` forbids reading or writing any file but the database
   (read_csv('/etc/passwd'), 'file.parquet' scans, ATTACH, COPY TO, extensions), and
   `lock_configuration=true` stops a query from switching that back on.
4. At most `ROW_CAP` rows come back (a lazy relation's LIMIT, not text appended to the
   query), and a query running past `TIMEOUT_S` is interrupted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from suite.store.store import Store

ROW_CAP = 1000
TIMEOUT_S = 15.0
CONNECT_WAIT_S = 5.0
_LOCKED_DOWN = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


class Refused(ValueError):
    """The statement is not a single read-only SELECT (or could not be parsed)."""


@dataclass(frozen=True)
class Answer:
    frame: pd.DataFrame
    truncated: bool


def check(sql: str) -> str:
    """The one SELECT in `sql`, as DuckDB's parser sees it; Refused otherwise."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise Refused(f"could not parse the query: {exc}") from exc
    if len(statements) != 1:
        raise Refused(f"one statement at a time, please (found {len(statements)})")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise Refused(
            f"only SELECT queries run here; {statement.type.name} statements are refused "
            "(the database is opened read-only, without file or extension access)"
        )
    return statement.query


def run(path: Path | str, sql: str, row_cap: int = ROW_CAP, timeout_s: float = TIMEOUT_S):
    """Run the user's one SELECT; returns at most `row_cap` rows and whether more existed."""
    query = check(sql)
    store = Store(path)
    with store.connect(read_only=True, wait_s=CONNECT_WAIT_S, config=dict(_LOCKED_DOWN)) as con:
        timer = threading.Timer(timeout_s, con.interrupt)
        timer.start()
        try:
            frame = con.sql(query).limit(row_cap + 1).df()
        finally:
            timer.cancel()
    return Answer(frame.head(row_cap), truncated=len(frame) > row_cap)
