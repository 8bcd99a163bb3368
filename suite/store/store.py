"""Writing and reading the DuckDB results file.

DuckDB lets one process hold a file, and a read-only open fails while a writer holds it.
So the writer keeps its windows short (open, one transaction, close) and readers retry;
a run lock (fcntl) keeps a second `peftbench run` from writing the same file at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from suite.cells import Cell, spec_hash
from suite.paths import DEFAULT_DB
from suite.results import CellResult
from suite.store.columns import add_missing, existing
from suite.store.comparisons import ensure_tables, fill_t_table, refresh_comparisons
from suite.store.continual import (
    CONTINUAL_TABLES,
    CONTINUAL_VIEWS,
    add_missing_continual_columns,
    write_continual,
)
from suite.store.federated import (
    FEDERATED_TABLES,
    FEDERATED_VIEWS,
    add_missing_federated_columns,
    write_federated,
)
from suite.store.posthoc import (
    POSTHOC_RUN_COLUMNS,
    POSTHOC_TABLES,
    POSTHOC_VIEWS,
    add_missing_columns,
    record_artifact,
    write_posthoc,
)
from suite.store.protocols import fill_posthoc_protocols, fill_protocols
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

# How long a connection waits for another process to let go of the file (seconds);
# PEFTBENCH_LOCK_WAIT_S overrides it (tests, and scripts that would rather fail fast).
LOCK_WAIT_S = 30.0


def lock_wait_s() -> float:
    return float(os.environ.get("PEFTBENCH_LOCK_WAIT_S", LOCK_WAIT_S))


class StoreBusy(RuntimeError):
    """Another process holds the database or the run lock."""


def describe_holder(text: str) -> str:
    """The run lock's "PID HOST" as words; older locks hold only the pid."""
    pid, _, host = text.strip().partition(" ")
    if not pid:
        return "pid unknown"
    return f"pid {pid} on {host}" if host else f"pid {pid}"


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
            add_missing(con, "cell_runs", CELL_RUN_COLUMNS)
            add_missing_columns(con)
            add_missing_continual_columns(con)
            add_missing_federated_columns(con)
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
            cols = list(CELL_RUN_COLUMNS)
            con.execute(
                f"INSERT INTO cell_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row.get(c) for c in cols],
            )
            metrics = metric_rows(cell, result, row["result_id"])
            if metrics:
                con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)", metrics)
            _insert_predictions(con, row["result_id"], result)
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

    def write_posthoc(self, cell, report, provenance: dict[str, Any], log_path=None) -> str:
        """Store one post-hoc attempt (suite/store/posthoc.py) in its own transaction."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            result_id = write_posthoc(con, cell, report, provenance, log_path)
            _insert_profile(con, report.placement.hardware_profile)
            con.execute("COMMIT")
        return result_id

    def write_continual(self, cell, report, provenance: dict[str, Any], log_path=None) -> str:
        """Store one continual attempt (suite/store/continual.py) in its own transaction."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            result_id = write_continual(con, cell, report, provenance, log_path)
            _insert_profile(con, report.placement.hardware_profile)
            con.execute("COMMIT")
        return result_id

    def write_federated(self, cell, report, provenance: dict[str, Any], log_path=None) -> str:
        """Store one federated round (suite/store/federated.py) in its own transaction."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            result_id = write_federated(con, cell, report, provenance, log_path)
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
    for table, columns in (("cell_runs", CELL_RUN_COLUMNS), ("posthoc_runs", POSTHOC_RUN_COLUMNS)):
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


def _yaml(spec) -> str:
    """The resolved spec as stored with the row (unset options left out)."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)


def result_row(cell: Cell, result: CellResult, provenance: dict[str, Any]) -> dict[str, Any]:
    task = cell.task
    primary = task.primary_metric
    row = result.model_dump(
        exclude={"val_metrics", "test_metrics", "baseline_val", "baseline_test"}
    )
    row.update(
        result_id=uuid.uuid4().hex,
        matrix=cell.matrix,
        method=cell.method.label,
        method_name=cell.method.name,
        method_kind=cell.method.kind,
        family=cell.method.family,
        fidelity=cell.method.fidelity,
        method_version=cell.method.method_version,
        size_params=list(cell.method.size_params),
        model=cell.model.name,
        task=task.name,
        seed=cell.seed,
        profile=cell.profile.name,
        lr=cell.method.lr,
        params=json.dumps(cell.method.params),
        budget=cell.budget.model_dump_json(),
        method_yaml=_yaml(cell.method),
        task_yaml=_yaml(task),
        model_yaml=_yaml(cell.model),
        task_hash=spec_hash(task),
        method_hash=spec_hash(cell.method),
        model_hash=spec_hash(cell.model),
        primary_metric=primary,
        higher_is_better=task.metric(primary).higher_is_better,
        val_primary=result.val_metrics.get(primary),
        test_primary=result.test_metrics.get(primary),
        baseline_test_primary=result.baseline_test.get(primary),
        finished_at=datetime.now(UTC).replace(tzinfo=None),
        versions=json.dumps(provenance.get("versions", {})),
        hardware=json.dumps(provenance.get("hardware", {})),
        git_sha=provenance.get("git_sha"),
        git_dirty=provenance.get("git_dirty"),
        run_id=provenance.get("run_id"),
        baseline_method=cell.baseline_method,
        task_type=task.type,
        note=cell.model.note or None,
        phase=cell.phase,
        trial_index=cell.trial_index,
        tuning=cell.tuning.model_dump_json() if cell.tuning else None,
        selection=json.dumps(cell.selection) if cell.selection else None,
        protocol=cell.protocol_name,
    )
    return row


def metric_rows(cell: Cell, result: CellResult, result_id: str) -> list[tuple]:
    rows = []
    splits = (
        ("validation", result.val_metrics),
        ("test", result.test_metrics),
        ("trial_test", result.trial_test_metrics),
    )
    for split, values in splits:
        for name, value in values.items():
            spec = cell.task.metric(name)
            rows.append((result_id, split, name, value, spec.version, spec.higher_is_better))
    return rows


def prediction_frame(result_id: str, result: CellResult):
    """The result's per-example predictions as rows of the `predictions` table."""
    import pandas as pd

    frames = []
    for split, found in result.predictions.items():
        n = len(found.gold)
        numeric = all(not isinstance(v, str) for v in (*found.pred, *found.gold))
        frame = pd.DataFrame(
            {
                "result_id": result_id,
                "split": split,
                "example": range(n),
                "pred_num": found.pred if numeric else [None] * n,
                "pred_text": [None] * n if numeric else [_text(v) for v in found.pred],
                "gold_num": found.gold if numeric else [None] * n,
                "gold_text": [None] * n if numeric else [_text(v) for v in found.gold],
                "score": found.score,
                "correct": [None if p is None or g is None else p == g
                            for p, g in zip(found.pred, found.gold, strict=True)],
            }
        )  # fmt: skip
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


def _text(value) -> str | None:
    return None if value is None else str(value)


def _insert_predictions(con, result_id: str, result: CellResult) -> None:
    frame = prediction_frame(result_id, result)
    if frame is None:
        return
    # Explicit types: an all-None column would otherwise reach DuckDB as an untyped one.
    frame = frame.astype({"pred_num": "float64", "gold_num": "float64", "score": "float64",
                          "pred_text": "object", "gold_text": "object", "correct": "object"})  # fmt: skip
    con.register("new_predictions", frame)
    try:
        con.execute("INSERT INTO predictions BY NAME SELECT * FROM new_predictions")
    finally:
        con.unregister("new_predictions")


def _insert_profile(con, profile: dict[str, Any] | None) -> None:
    """Store a worker's recorded hardware profile once (rows link to it by profile_id)."""
    if not profile:
        return
    cols = list(HARDWARE_PROFILE_COLUMNS)
    values = [json.dumps(profile.get(c)) if c == "versions" else profile.get(c) for c in cols]
    con.execute(
        f"INSERT OR IGNORE INTO hardware_profiles ({', '.join(cols)}) "
        f"VALUES ({', '.join('?' * len(cols))})",
        values,
    )


def baseline_rows(cell: Cell, result: CellResult) -> list[tuple]:
    task_hash = spec_hash(cell.task)
    return [
        (cell.task.name, task_hash, cell.task.baseline, split, name, value)
        for split, values in (("validation", result.baseline_val), ("test", result.baseline_test))
        for name, value in values.items()
    ]


class RunLock:
    """An exclusive lock beside the database for the length of a run, holding the pid and
    host of the run that took it (so a second run says at once who is writing).

    Re-entrant within one process: the CLI takes it before planning, and `run_plan`,
    which other callers use alone, takes it again (flock would refuse a second open file)."""

    _held: dict[str, int] = {}  # lock path -> depth, in this process

    def __init__(self, db_path: Path):
        self.path = Path(str(db_path) + ".runlock")
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        key = str(self.path.resolve())
        if key in RunLock._held:
            RunLock._held[key] += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._take(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}".encode())
        self._fd = fd
        RunLock._held[key] = 1
        return self

    def _take(self, fd: int) -> None:
        """flock `fd`, or close it and raise StoreBusy naming the run that holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.read(fd, 256).decode(errors="replace")
            os.close(fd)
            raise StoreBusy(
                f"another `peftbench run` ({describe_holder(holder)}) is writing "
                f"{str(self.path)[:-8]}; wait for it to finish, or give this run its own --db"
            ) from exc

    def refuse_if_held(self) -> None:
        """Raise StoreBusy at once if another run holds the lock; creates nothing (a run
        that stops on a spec error must leave no file behind), so it only peeks."""
        if str(self.path.resolve()) in RunLock._held or not self.path.exists():
            return
        fd = os.open(self.path, os.O_RDWR)
        self._take(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __exit__(self, *exc) -> None:
        key = str(self.path.resolve())
        RunLock._held[key] = RunLock._held.get(key, 1) - 1
        if RunLock._held[key] > 0:
            return
        del RunLock._held[key]
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
