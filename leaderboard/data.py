"""Read-only access to the store's views for the leaderboard pages.

Every page reads through a `Reader`: a short read-only connection per query (DuckDB lets
one process hold the file, and the matrix driver is writing between its short windows),
retried for a moment, and a cache keyed by the file's size and modification time. When
the writer holds the file past the wait, the last good read of the same query is served
and marked `busy`, so the app keeps working during a run and says how fresh it is.
SQL here reads the views defined with the store (`suite/store/views.py`); user input only
ever reaches it as bound parameters or as names checked against a whitelist.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from leaderboard.snapshot import Snapshots
from suite.paths import DEFAULT_DB
from suite.store.store import Store, StoreBusy

DB_ENV = "PEFTBENCH_DB"
WAIT_S = 2.0
_CACHE_SIZE = 256


def db_path() -> Path:
    """The database the app shows: $PEFTBENCH_DB (set by `peftbench leaderboard`) or the default."""
    return Path(os.environ.get(DB_ENV) or DEFAULT_DB)


@dataclass(frozen=True)
class Read:
    """One query's rows, when they were read, and whether the writer blocked a fresh read."""

    frame: pd.DataFrame
    read_at: datetime
    busy: bool = False


@dataclass
class _Entry:
    version: tuple
    read: Read


_CACHE: OrderedDict[tuple, _Entry] = OrderedDict()
_LOCK = threading.Lock()
# After a read found the writer holding a file, cached reads of it are served without
# waiting again until this monotonic time, so one page render waits once, not per query.
_BUSY_UNTIL: dict[str, float] = {}
BUSY_BACKOFF_S = 3.0
SNAPSHOTS = Snapshots()


def forget_busy() -> None:
    """Wait again on the next read of a file found busy (instead of serving the cached
    read until the back-off ends): for a caller that knows the writer has finished."""
    _BUSY_UNTIL.clear()


def clear_caches() -> None:
    """Forget every cached read and snapshot (tests and benchmarks measure cold reads)."""
    with _LOCK:
        _CACHE.clear()
    SNAPSHOTS.clear()
    _BUSY_UNTIL.clear()


def _file_version(path: Path) -> tuple:
    """Size and mtime of the file and its WAL: they change whenever the writer commits."""
    parts = []
    for p in (path, Path(str(path) + ".wal")):
        try:
            st = p.stat()
            parts.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            parts.append(None)
    return tuple(parts)


def _hashable(params: Sequence) -> tuple:
    return tuple(tuple(p) if isinstance(p, list) else p for p in params)


class Reader:
    """Cached, retried, read-only queries against one results database."""

    def __init__(self, path: Path | str | None = None, wait_s: float = WAIT_S):
        self.path = Path(path) if path is not None else db_path()
        self.wait_s = wait_s
        self.last_busy = False  # set when any read of this reader was served stale

    def exists(self) -> bool:
        return self.path.exists()

    def read(self, sql: str, params: Sequence = (), views: Sequence[str] = ()) -> Read:
        """Rows of one read-only statement; served from cache while the file is unchanged.

        A statement over the analysis views names them in `views` and runs on this file
        version's in-memory snapshot; anything else runs on the file itself.
        """
        path = str(self.path.resolve())
        key = (path, sql, _hashable(params))
        version = _file_version(self.path)
        with _LOCK:
            hit = _CACHE.get(key)
        if hit is not None and hit.version == version:
            return hit.read
        if hit is not None and time.monotonic() < _BUSY_UNTIL.get(path, 0.0):
            return replace(hit.read, busy=True)
        try:
            frame = self._run(path, version, sql, params, views)
        except StoreBusy:
            _BUSY_UNTIL[path] = time.monotonic() + BUSY_BACKOFF_S
            if hit is not None:
                return replace(hit.read, busy=True)
            older = SNAPSHOTS.fallback(path, views) if views else None
            if older is None:
                raise
            return Read(older.query(sql, params), datetime.now(UTC), busy=True)
        _BUSY_UNTIL.pop(path, None)
        read = Read(frame, datetime.now(UTC))
        with _LOCK:
            _CACHE[key] = _Entry(version, read)
            _CACHE.move_to_end(key)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return read

    def connect(self):
        """A read-only connection to the reader's file (waits its wait_s for a writer)."""
        return Store(self.path).connect(read_only=True, wait_s=self.wait_s)

    def _run(self, path: str, version: tuple, sql: str, params: Sequence, views: Sequence[str]):
        if views:
            snap = SNAPSHOTS.for_version(path, version)
            snap.ensure(views, self.connect)
            return snap.query(sql, params)
        with self.connect() as con:
            return con.execute(sql, list(params)).df()

    def frame(self, sql: str, params: Sequence = (), views: Sequence[str] = ()) -> pd.DataFrame:
        read = self.read(sql, params, views)
        self.last_busy = self.last_busy or read.busy
        return read.frame

    def has_column(self, table: str, column: str) -> bool:
        """Whether the store's `table` (or view) has `column` (older stores lack some)."""
        found = self.frame(
            "SELECT count(*) AS n FROM information_schema.columns "
            "WHERE table_name = ? AND column_name = ?",
            [table, column],
        )
        return bool(int(found["n"].iloc[0]))


# The store's tables of runs, each with how it counts them and its runs' name (a federated
# run is many rounds); a store older than one lacks it.
RUN_TABLES = {
    "cell_runs": ("count(*)", "cell"),
    "posthoc_runs": ("count(*)", "post-hoc"),
    "continual_runs": ("count(*)", "continual"),
    "federated_rounds": ("count(DISTINCT fed_run)", "federated"),
}


@dataclass(frozen=True)
class Freshness:
    """How fresh the shown data is: when it was read, the newest result, the runs stored
    (cell runs, and the other kinds that have any), and the run state."""

    read_at: datetime
    newest_result: datetime | None
    n_runs: int
    busy: bool
    other_runs: dict[str, int] = field(default_factory=dict)

    def describe(self, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        age = max(0, int((now - self.read_at).total_seconds()))
        newest = (
            self.newest_result.strftime("%Y-%m-%d %H:%M:%S UTC") if self.newest_result else "none"
        )
        cells = f"{self.n_runs:,} cell runs" if self.n_runs or not self.other_runs else ""
        others = " / ".join(f"{n:,} {kind}" for kind, n in self.other_runs.items())
        noun = "run" if list(self.other_runs.values()) == [1] else "runs"
        runs = "; ".join([cells or "no training cells", *([f"{others} {noun}"] if others else [])])
        text = f"Data read {age} s ago ({runs}; newest result {newest})."
        if self.busy:
            text += " A matrix is writing the database: showing the last complete read."
        return text


def freshness(reader: Reader) -> Freshness:
    """When the data was read, the runs the store holds of each kind and the newest of
    them (finished_at, UTC)."""
    present = set(reader.frame("SELECT table_name FROM information_schema.tables")["table_name"])
    read = reader.read(
        " UNION ALL ".join(
            f"SELECT '{kind}' AS kind, max(finished_at) AS newest, {count} AS n FROM {table}"
            for table, (count, kind) in RUN_TABLES.items()
            if table in present
        )
    )
    newest = read.frame["newest"].max()
    newest = None if pd.isna(newest) else pd.Timestamp(newest).to_pydatetime()
    found = dict(zip(read.frame["kind"], read.frame["n"], strict=True))
    runs = {kind: int(found[kind]) for _, kind in RUN_TABLES.values() if kind in found}
    return Freshness(
        read_at=read.read_at,
        newest_result=newest,
        n_runs=runs.pop("cell", 0),
        busy=read.busy or reader.last_busy,
        other_runs={kind: n for kind, n in runs.items() if n},
    )
