"""In-memory copies of the store's analysis views, one per version of the database file.

The views (`suite/store/views.py`) aggregate every result row each time they are read,
and a page reads them several times with different filters. So the first read of a view
after the file changes copies the whole view into an in-memory DuckDB database (one
evaluation, done lazily per view), and every filtered page query then runs against that
copy. The views built on `leaderboard` alone (pareto, aggregate, rank_sweep) are
evaluated in memory from their store definitions over the copied `leaderboard`, instead
of evaluating `leaderboard` again inside each of them; if a definition no longer fits,
the view is copied from the file like the others. The file is only opened for copies,
in short read-only windows; the previous version's copy stays available to serve reads
while a matrix holds the file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import pandas as pd

# The views a page may read through a snapshot (names are never taken from user input).
SNAPSHOT_VIEWS = frozenset({"leaderboard", "pareto", "aggregate", "rank_sweep"})
# Views whose store definition reads only these relations, so it can run on the copies.
DERIVED_FROM = {
    "pareto": ("leaderboard",),
    "aggregate": ("leaderboard",),
    "rank_sweep": ("leaderboard",),
}
_COPYABLE = SNAPSHOT_VIEWS


def _definition(name: str) -> str | None:
    """The store's `CREATE OR REPLACE VIEW name AS ...` statement, if it defines one."""
    try:
        from suite.store import views
    except ImportError:
        return None
    ddl = getattr(views, name.upper(), None)
    if isinstance(ddl, str) and f"VIEW {name} AS" in ddl:
        return ddl
    return None


class Snapshot:
    """The analysis views of one file version, copied into memory as they are first read."""

    def __init__(self, version: tuple):
        import duckdb

        self.version = version
        self.con = duckdb.connect(":memory:")
        self.loaded: set[str] = set()
        self._lock = threading.Lock()

    def has(self, names: Sequence[str]) -> bool:
        return all(n in self.loaded for n in names)

    def ensure(self, names: Sequence[str], connect: Callable[[], AbstractContextManager]) -> None:
        """Make the views in `names` available, opening the file at most twice."""
        unknown = set(names) - SNAPSHOT_VIEWS
        if unknown:
            raise ValueError(f"not a snapshot view: {sorted(unknown)}")
        with self._lock:
            missing = [n for n in names if n not in self.loaded]
            if not missing:
                return
            derivable = {n for n in missing if n in DERIVED_FROM and _definition(n)}
            sources = {d for n in derivable for d in DERIVED_FROM[n]}
            self._copy(sorted((set(missing) - derivable) | sources), connect)
            failed = [n for n in sorted(derivable) if not self._derive(n)]
            self._copy(failed, connect)

    def _copy(self, names: list[str], connect: Callable[[], AbstractContextManager]) -> None:
        todo = [n for n in names if n not in self.loaded]
        if not todo:
            return
        with connect() as src:
            src.execute("SET enable_progress_bar = false")  # not on the server's terminal
            for name in todo:
                assert name in _COPYABLE  # whitelisted names only, never user input
                table = src.sql(f'SELECT * FROM "{name}"').to_arrow_table()
                self.con.register("incoming_view", table)
                self.con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM incoming_view')
                self.con.unregister("incoming_view")
                self.loaded.add(name)

    def _derive(self, name: str) -> bool:
        """Evaluate the store's definition of `name` over the copies, as a table."""
        import duckdb

        staged = f"{name}_definition"
        try:
            self.con.execute(_definition(name))
            self.con.execute(f'ALTER VIEW "{name}" RENAME TO "{staged}"')
            self.con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM "{staged}"')
        except duckdb.Error:
            self.con.execute(f'DROP VIEW IF EXISTS "{name}"')
            return False
        finally:
            self.con.execute(f'DROP VIEW IF EXISTS "{staged}"')
        self.loaded.add(name)
        return True

    def query(self, sql: str, params: Sequence) -> pd.DataFrame:
        cursor = self.con.cursor()  # one cursor per query: pages render in parallel threads
        try:
            return cursor.execute(sql, list(params)).df()
        finally:
            cursor.close()


class Snapshots:
    """The current and the previous snapshot of each database file."""

    def __init__(self) -> None:
        self._current: dict[str, Snapshot] = {}
        self._previous: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def for_version(self, path: str, version: tuple) -> Snapshot:
        with self._lock:
            snap = self._current.get(path)
            if snap is None or snap.version != version:
                if snap is not None and snap.loaded:
                    self._previous[path] = snap
                snap = self._current[path] = Snapshot(version)
            return snap

    def fallback(self, path: str, names: Sequence[str]) -> Snapshot | None:
        """The newest snapshot already holding `names`, for reads while the file is busy."""
        with self._lock:
            for snap in (self._current.get(path), self._previous.get(path)):
                if snap is not None and snap.has(names):
                    return snap
        return None

    def clear(self) -> None:
        with self._lock:
            self._current.clear()
            self._previous.clear()
