"""Published results: a protocol's rows as a versioned dataset in the repository.

`publish` writes the latest attempt of every cell of one protocol, with its metrics, its
per-example predictions, the baselines of its tasks and the hardware profiles it ran on,
as Parquet files plus a `manifest.json` (protocol, commits, method versions, hardware,
CPU-hours, date, and a sha256 of every file). `load_published` reads such a folder into a
store, marking every row it adds with `origin` (the dataset's name), so that:

- a run of the same protocol skips the published cells (the store resumes from them: a
  league too long for one session is carried from one to the next in git), and
- the leaderboard can tell published rows from a user's own.

The folder is plain data: DuckDB, pandas or any Parquet reader opens it without peftbench.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suite.store.schema import CELL_RUN_COLUMNS, HARDWARE_PROFILE_COLUMNS, rebuild_latest
from suite.store.store import Store, _sql_path

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# Table -> the query that selects the protocol's part of it, given `ids` (the published
# result ids) registered as a relation. Order matters on load: runs first.
_PARTS: dict[str, str] = {
    "cell_runs": "SELECT r.* FROM cell_runs r JOIN ids USING (result_id)",
    "metrics": "SELECT m.* FROM metrics m JOIN ids USING (result_id)",
    "predictions": "SELECT p.* FROM predictions p JOIN ids USING (result_id) "
    "ORDER BY p.result_id, p.split, p.example",
    "baselines": "SELECT * FROM baselines WHERE task_hash IN (SELECT DISTINCT task_hash "
    "FROM cell_runs JOIN ids USING (result_id))",
    "hardware_profiles": "SELECT * FROM hardware_profiles WHERE profile_id IN (SELECT DISTINCT "
    "hardware_profile_id FROM cell_runs JOIN ids USING (result_id))",
}
# What makes a row of each table unique, so loading twice adds nothing the second time.
_KEYS = {
    "cell_runs": ["result_id"],
    "metrics": ["result_id", "split", "metric"],
    "predictions": ["result_id", "split", "example"],
    "baselines": ["task_hash", "split", "metric"],
    "hardware_profiles": ["profile_id"],
}


class PublishedError(RuntimeError):
    """A published folder that is missing, incomplete or altered."""


@dataclass(frozen=True)
class LoadReport:
    name: str
    added: dict[str, int]


def _protocol_ids(con, protocol: str) -> list[str]:
    """The latest attempt of each cell of the protocol (failed ones too: a failure is a
    result the league explains)."""
    rows = con.execute(
        "SELECT result_id FROM latest_results WHERE protocol = ? ORDER BY cell_id", [protocol]
    ).fetchall()
    return [r[0] for r in rows]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _summary(con) -> dict[str, Any]:
    """What the manifest says of the rows: commits, method versions, hardware, CPU-hours."""
    runs = con.execute(
        "SELECT method, method_version, fidelity, git_sha, git_dirty, hardware_profile_id, "
        "status, phase, cell_wall_s, finished_at, task FROM cell_runs JOIN ids USING (result_id)"
    ).df()
    threads = dict(
        con.execute(
            "SELECT profile_id, torch_threads FROM hardware_profiles WHERE profile_id IN "
            "(SELECT hardware_profile_id FROM cell_runs JOIN ids USING (result_id))"
        ).fetchall()
    )
    # A profile that did not record its threads counts as one; a failed cell's wall time
    # may be missing (NULL), and counts as nothing.
    per_cell = runs["hardware_profile_id"].map(lambda p: threads.get(p) or 1).astype(float)
    cpu_s = float((runs["cell_wall_s"].fillna(0.0) * per_cell).sum())
    methods = (
        runs.groupby("method")[["method_version", "fidelity"]].first().astype(str).to_dict("index")
    )
    return {
        "cells": int(len(runs)),
        "status": {str(k): int(v) for k, v in runs["status"].value_counts().items()},
        "phases": {
            str(k): int(v) for k, v in runs["phase"].fillna("single").value_counts().items()
        },
        "tasks": sorted(map(str, runs["task"].dropna().unique())),
        "methods": methods,
        "commits": sorted(map(str, runs["git_sha"].dropna().unique())),
        "any_dirty": bool(runs["git_dirty"].fillna(False).any()),
        "hardware_profiles": sorted(map(str, runs["hardware_profile_id"].dropna().unique())),
        "cell_wall_hours": round(float(runs["cell_wall_s"].fillna(0).sum()) / 3600, 3),
        # Wall time x the torch threads of the worker that ran the cell.
        "cpu_hours": round(cpu_s / 3600, 3),
        "first_finished": str(runs["finished_at"].min()),
        "last_finished": str(runs["finished_at"].max()),
    }


def publish(store: Store, protocol: str, out: Path, *, note: str = "") -> dict[str, Any]:
    """Write the protocol's rows under `out` (replacing what was there); returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    with store.connect(read_only=True) as con:
        ids = _protocol_ids(con, protocol)
        if not ids:
            raise PublishedError(f"no rows of protocol {protocol!r} in {store.path}")
        con.execute("CREATE TEMP TABLE ids AS SELECT unnest(?) AS result_id", [ids])
        files = {}
        for table, select in _PARTS.items():
            path = out / f"{table}.parquet"
            con.execute(
                f"COPY ({select}) TO '{_sql_path(path)}' (FORMAT parquet, COMPRESSION zstd)"
            )
            files[path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        summary = _summary(con)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": out.name,
        "protocol": protocol,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": note,
        **summary,
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, with every file checked against its recorded sha256."""
    path = folder / MANIFEST
    if not path.is_file():
        raise PublishedError(f"{folder} has no {MANIFEST}: not a published dataset")
    manifest = json.loads(path.read_text())
    for name, meta in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise PublishedError(f"{file} is missing (listed in {path})")
        if _sha256(file) != meta["sha256"]:
            raise PublishedError(f"{file} differs from the checksum in {path}")
    return manifest


def load_published(store: Store, folder: Path) -> LoadReport:
    """Add a published folder's rows to the store (rows already there are kept as they are)."""
    manifest = read_manifest(folder)
    store.init()
    added = {}
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        for table in _PARTS:
            added[table] = _load_table(con, table, folder / f"{table}.parquet", manifest["name"])
        if not any(added.values()):  # loaded before: nothing to refresh
            con.execute("ROLLBACK")
            return LoadReport(name=manifest["name"], added=added)
        rebuild_latest(con)
        from suite.store.comparisons import refresh_comparisons

        refresh_comparisons(con)
        con.execute("COMMIT")
    return LoadReport(name=manifest["name"], added=added)


def published_folders(root: Path) -> list[Path]:
    """The published datasets under `root` (each a folder with a manifest), by name."""
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def load_all_published(store: Store, root: Path) -> list[LoadReport]:
    """Every published dataset under `root` loaded into the store (each adds only the rows
    the store lacks, so loading again is cheap and changes nothing)."""
    return [load_published(store, folder) for folder in published_folders(root)]


def _load_table(con, table: str, path: Path, origin: str) -> int:
    columns = {
        "cell_runs": list(CELL_RUN_COLUMNS),
        "hardware_profiles": list(HARDWARE_PROFILE_COLUMNS),
    }.get(table)
    source = f"read_parquet('{_sql_path(path)}')"
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    keys = _KEYS[table]
    new = (
        f"SELECT s.* FROM {source} s ANTI JOIN {table} t USING ({', '.join(keys)})"
    )  # fmt: skip
    if columns is None:
        before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        con.execute(f"INSERT INTO {table} BY NAME {new}")
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
    # Columns an older publication lacks stay NULL; the origin marks the imported rows.
    picked = [c for c in columns if c in have and c != "origin"]
    extra = ", ? AS origin" if table == "cell_runs" else ""
    before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    con.execute(
        f"INSERT INTO {table} BY NAME SELECT {', '.join(picked)}{extra} FROM ({new})",
        [origin] if extra else [],
    )
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
