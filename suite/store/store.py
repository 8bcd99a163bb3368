"""Writing and reading the DuckDB results file.

DuckDB lets one process hold a file, and a read-only open fails while a writer holds it.
So the writer keeps its windows short (open, one transaction, close) and readers retry;
a run lock (fcntl, suite/store/lock.py) keeps a second `peftbench run` from writing the
same file at once. The rows of each kind of cell are built in a module of their own
(trained.py, posthoc.py, continual.py); this one registers their tables and writes them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from suite.cells import Cell
from suite.paths import DEFAULT_DB
from suite.results import CellResult
from suite.store import lock
from suite.store.columns import Attempt, add_missing, existing, insert_row, write_attempt
from suite.store.comparisons import ensure_tables, fill_t_table, refresh_comparisons
from suite.store.continual import (
    CONTINUAL_RUN_COLUMNS,
    CONTINUAL_TABLES,
    CONTINUAL_VIEWS,
    continual_attempt,
)
from suite.store.federated import (
    FEDERATED_ROUND_COLUMNS,
    FEDERATED_TABLES,
    FEDERATED_VIEWS,
    federated_attempt,
)
from suite.store.posthoc import (
    ARTIFACT_COLUMNS,
    POSTHOC_RUN_COLUMNS,
    POSTHOC_TABLES,
    POSTHOC_VIEWS,
    posthoc_attempt,
    record_artifact,
)
from suite.store.protocols import fill_posthoc_protocols, fill_protocols, join_protocol
from suite.store.references import refresh_references
from suite.store.schema import (
    CELL_RUN_COLUMNS,
    HARDWARE_PROFILE_COLUMNS,
    INDEXES,
    SCHEMA_VERSION,
    TABLES,
    VIEWS,
    latest_is_current,
    rebuild_latest,
    refresh_latest,
)
from suite.store.trained import baseline_rows, insert_predictions, metric_rows, result_row

# The run lock and the error of a held store, where their callers import them from.
RunLock, StoreBusy = lock.RunLock, lock.StoreBusy

# How long a connection waits for another process to let go of the file (seconds);
# PEFTBENCH_LOCK_WAIT_S overrides it (tests, and scripts that would rather fail fast).
LOCK_WAIT_S = 30.0


def _derived() -> dict[str, dict[str, str]]:
    """The tables whose columns derive from the result types (suite/store/columns.py),
    which `init` brings up to date in place (read at call time: tests widen them)."""
    return {
        "cell_runs": CELL_RUN_COLUMNS,
        "artifacts": ARTIFACT_COLUMNS,
        "posthoc_runs": POSTHOC_RUN_COLUMNS,
        "continual_runs": CONTINUAL_RUN_COLUMNS,
        "federated_rounds": FEDERATED_ROUND_COLUMNS,
    }


def lock_wait_s() -> float:
    return float(os.environ.get("PEFTBENCH_LOCK_WAIT_S", LOCK_WAIT_S))


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text or "conflicting" in text or "being used" in text


class Store:
    """One DuckDB file of results."""

    def __init__(self, path: Path | str = DEFAULT_DB):
        self.path = Path(path)

    @contextmanager
    def connect(
        self, read_only: bool = False, wait_s: float | None = None, config: dict | None = None
    ):
        """A short-lived connection, retried while another process holds the file.

        `config` is passed to duckdb.connect (the SQL box locks its connection down with it).
        """
        import duckdb

        if read_only and not self.path.exists():
            raise FileNotFoundError(
                f"no results database at {self.path}; run `peftbench run` first"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + (lock_wait_s() if wait_s is None else wait_s)
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config or {})
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    raise StoreBusy(f"{self.path} is held by another process: {exc}") from exc
                time.sleep(0.1)
        try:
            yield con
        finally:
            con.close()

    def init(self) -> None:
        with self.connect() as con:
            for ddl in TABLES + POSTHOC_TABLES + CONTINUAL_TABLES + FEDERATED_TABLES:
                con.execute(ddl)
            stored = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            upgraded = stored is not None and stored[0] != str(SCHEMA_VERSION)
            for table, columns in _derived().items():
                add_missing(con, table, columns)
            named = fill_protocols(con)  # rows stored before protocols existed
            fill_posthoc_protocols(con)
            recreated = ensure_tables(con)
            if upgraded or named or not latest_is_current(con):
                rebuild_latest(con)
            for ddl in INDEXES + VIEWS + POSTHOC_VIEWS + CONTINUAL_VIEWS + FEDERATED_VIEWS:
                con.execute(ddl)
            fill_t_table(con)
            refresh_references(con)
            if upgraded or recreated or named:  # comparisons written by older code: recomputed once
                refresh_comparisons(con)
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )

    def upgrade_if_older(self) -> bool:
        """Upgrade a store written by older code in place (`init`) before it is read, so
        the leaderboard and queries see today's columns (the protocol of older rows);
        True when it did. A current store is only read. Older: another schema version,
        or a column the result types have gained since (suite/store/columns.py)."""
        if not self.path.exists():
            return False
        with self.connect(read_only=True) as con:
            if not _has_table(con, "meta"):
                return False
            stored = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            lacking = _lacks_columns(con)
        if stored is None or (stored[0] == str(SCHEMA_VERSION) and not lacking):
            return False
        self.init()
        return True

    def protocol_budgets(self, protocol: str) -> list[str]:
        """The distinct budgets (JSON) stored under a protocol; a declared protocol fixes
        its budget (suite/driver.py refuses a matrix that would change it)."""
        if not self.path.exists():
            return []
        with self.connect(read_only=True) as con:
            if not _has_table(con, "cell_runs"):
                return []
            columns = {r[0] for r in con.execute("DESCRIBE cell_runs").fetchall()}
            if "protocol" not in columns:
                return []
            rows = con.execute(
                "SELECT DISTINCT CAST(budget AS VARCHAR) FROM cell_runs WHERE protocol = ?",
                [protocol],
            ).fetchall()
        return [r[0] for r in rows]

    def ok_cell_ids(self, cell_ids: Iterable[str]) -> set[str]:
        return self._ids_with("cell_runs", "status = 'ok'", cell_ids)

    def write(self, cell: Cell, result: CellResult, provenance: dict[str, Any]) -> str:
        """Store one result in its own transaction; returns its result_id."""
        row = result_row(cell, result, provenance)
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            metrics = metric_rows(cell, result, row["result_id"])
            write_attempt(con, Attempt("cell_runs", CELL_RUN_COLUMNS, row, "metrics", metrics))
            insert_predictions(con, row["result_id"], result)
            baselines = baseline_rows(cell, result)
            if baselines:
                con.executemany(
                    "INSERT OR REPLACE INTO baselines VALUES (?, ?, ?, ?, ?, ?)", baselines
                )
            _insert_profile(con, result.hardware_profile)
            record_artifact(con, cell, result, row["result_id"])
            # The comparisons read `results` (latest_results), so the new row must be in it
            # first; result-to-row is timed over the refresh too, so the row's latest copy
            # is refreshed once more after that time is set (one indexed row, cheap).
            refresh_latest(con, row["cell_id"])
            refresh_comparisons(con, (row["task_hash"], row["model"], row["profile"]))
            _record_result_to_row(con, result, row["result_id"])
            refresh_latest(con, row["cell_id"])
            con.execute("COMMIT")
        return row["result_id"]

    def join_protocols(self, cells: Iterable[Cell]) -> int:
        """Record that the cells' protocols planned them (a matrix that finds a cell stored
        under another protocol lists it too); returns the comparison scopes refreshed."""
        planned = [
            (c.protocol_name, c.cell_id, c.baseline_method) for c in cells if isinstance(c, Cell)
        ]
        if not planned:
            return 0
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            scopes = join_protocol(con, planned)
            for scope in scopes:
                refresh_comparisons(con, scope)
            con.execute("COMMIT")
        return len(scopes)

    def write_posthoc(self, cell, report, provenance: dict[str, Any], log_path=None) -> str:
        """Store one post-hoc attempt (suite/store/posthoc.py) in its own transaction."""
        return self._write_report(posthoc_attempt(cell, report, provenance, log_path), report)

    def write_continual(self, cell, report, provenance: dict[str, Any], log_path=None) -> str:
        """Store one continual attempt (suite/store/continual.py) in its own transaction."""
        return self._write_report(continual_attempt(cell, report, provenance, log_path), report)

    def write_federated(self, cell, report, provenance: dict[str, Any], log_path=None) -> str:
        """Store one federated round (suite/store/federated.py) in its own transaction."""
        return self._write_report(federated_attempt(cell, report, provenance, log_path), report)

    def _write_report(self, attempt: Attempt, report) -> str:
        """One attempt and the hardware profile its worker recorded, in one transaction."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            result_id = write_attempt(con, attempt)
            _insert_profile(con, report.placement.hardware_profile)
            con.execute("COMMIT")
        return result_id

    def continual_ok_ids(self, cell_ids: Iterable[str]) -> set[str]:
        return self._ids_with("continual_runs", "status = 'ok'", cell_ids)

    def posthoc_ok_ids(self, cell_ids: Iterable[str]) -> set[str]:
        return self._ids_with("posthoc_runs", "status = 'ok'", cell_ids)

    def artifact_rows(self, cell_ids: Iterable[str]) -> dict[str, tuple[str, int, str]]:
        """cell id -> (path, bytes, sha256) of its recorded artifact."""
        ids = list(cell_ids)
        if not ids or not self.path.exists():
            return {}
        with self.connect(read_only=True) as con:
            if not _has_table(con, "artifacts"):
                return {}
            rows = con.execute(
                "SELECT cell_id, path, bytes, sha256 FROM artifacts WHERE cell_id IN (SELECT unnest(?))",
                [ids],
            ).fetchall()
        return {r[0]: (r[1], int(r[2]), r[3]) for r in rows}

    def latest_status(self, cell_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
        """cell id -> (status, error) of its latest stored attempt (trained cells)."""
        ids = list(cell_ids)
        if not ids or not self.path.exists():
            return {}
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT cell_id, status, error FROM cell_runs WHERE cell_id IN (SELECT unnest(?)) "
                "QUALIFY row_number() OVER (PARTITION BY cell_id ORDER BY finished_at DESC) = 1",
                [ids],
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def _ids_with(self, table: str, condition: str, cell_ids: Iterable[str]) -> set[str]:
        ids = list(cell_ids)
        if not ids or not self.path.exists():
            return set()
        with self.connect(read_only=True) as con:
            if not _has_table(con, table):
                return set()
            # `table` and `condition` come from this module, never from users.
            rows = con.execute(
                f"SELECT DISTINCT cell_id FROM {table} WHERE {condition} AND cell_id IN "
                "(SELECT unnest(?))",
                [ids],
            ).fetchall()
        return {r[0] for r in rows}

    def query(self, sql: str, params: list | None = None):
        """Run one statement on a read-only connection; returns a pandas DataFrame."""
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def export_parquet(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        with self.connect(read_only=True) as con:
            names = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
                ).fetchall()
            ]
            for name in sorted(names):
                out = folder / f"{name}.parquet"
                con.execute(
                    f"COPY (SELECT * FROM \"{name}\") TO '{_sql_path(out)}' (FORMAT parquet)"
                )
                written.append(out)
        return written


def _has_table(con, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()[0]
    )


def _lacks_columns(con) -> bool:
    """Whether the store's row tables lack a column the result types now have."""
    for table, columns in _derived().items():
        have = existing(con, table)
        if have and not set(columns) <= have:
            return True
    return False


def _record_result_to_row(con, result: CellResult, result_id: str) -> None:
    """The driver's phase (worker finished to row written, up to the commit) and the
    cell's total wall time, set on the row once everything else of it is written."""
    if result.finished_unix is None:
        return
    fields = result.stored(max(time.time() - result.finished_unix, 0.0))
    for name, value in fields.items():
        setattr(result, name, value)  # the driver's summary shows them too
    if fields:
        sets = ", ".join(f"{name} = ?" for name in fields)  # names from suite/results.py
        con.execute(
            f"UPDATE cell_runs SET {sets} WHERE result_id = ?", [*fields.values(), result_id]
        )


def _sql_path(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")


def _insert_profile(con, profile: dict[str, Any] | None) -> None:
    """Store a worker's recorded hardware profile once (rows link to it by profile_id)."""
    if not profile:
        return
    row = {**profile, "versions": json.dumps(profile.get("versions"))}
    insert_row(con, "hardware_profiles", HARDWARE_PROFILE_COLUMNS, row, conflict="IGNORE")
