"""Published results: a protocol's rows as a versioned dataset in the repository.

`publish` writes the latest attempt of every cell of one protocol, with what hangs off
it and the hardware profiles it ran on, as Parquet files plus a `manifest.json`
(protocol, track, commits, method versions, hardware, CPU-hours and how they were
counted, date, and a sha256 of every file). Which tables that is, is the track's
(suite/store/export.py): a training protocol's cells with their metrics, per-example
predictions and their tasks' baselines; a continual protocol's cells with their accuracy
matrices; a federated protocol's rounds. `load_published` reads such a folder into a store, marking every
attempt row it adds with `origin` (the dataset's name), so that:

- a run of the same protocol skips the published cells (the store resumes from them: a
  league too long for one session is carried from one to the next in git), and
- the leaderboard can tell published rows from a user's own.

The folder is plain data: DuckDB, pandas or any Parquet reader opens it without peftbench.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suite.artifacts import sha256_file
from suite.store import columns
from suite.store.continual import CONTINUAL_EXPORT
from suite.store.export import TrackExport, distinct
from suite.store.federated import FEDERATED_EXPORT
from suite.store.schema import HARDWARE_PROFILE_COLUMNS
from suite.store.store import Store, _sql_path
from suite.store.trained import TRAINING_EXPORT

MANIFEST = "manifest.json"
# The folder's subfolder for the files a track's rows need beyond themselves.
FILES = "files"
# Still 1: a manifest without `track` (league-v1, written before the tracks were
# publishable) is a training publication, so every folder written so far loads as it is.
FORMAT_VERSION = 1
# Every track that can be published, by the manifest's `track`; the first is the default.
TRACKS: dict[str, TrackExport] = {
    t.track: t for t in (TRAINING_EXPORT, CONTINUAL_EXPORT, FEDERATED_EXPORT)
}
DEFAULT_TRACK = TRAINING_EXPORT.track


class PublishedError(RuntimeError):
    """A published folder that is missing, incomplete or altered."""


@dataclass(frozen=True)
class LoadReport:
    name: str
    added: dict[str, int]
    # The publication's track and how many of its attempt rows (cells, rounds) were new.
    track: str = DEFAULT_TRACK
    rows: int = 0


def _latest_ids(con, track: TrackExport, protocol: str) -> list[str]:
    """The latest attempt of each cell (round) of the protocol in one track."""
    if not columns.existing(con, track.runs):
        return []
    return [r[0] for r in con.execute(track.latest, [protocol]).fetchall()]


def _stored_protocols(con) -> str:
    """Every protocol the store holds, by track, in words (for a name that is not there)."""
    said = []
    for track in TRACKS.values():
        if columns.existing(con, track.runs):
            names = con.execute(
                f"SELECT DISTINCT protocol FROM {track.runs} WHERE protocol IS NOT NULL "
                "ORDER BY protocol"
            ).fetchall()
            if names:
                said.append(f"{track.track}: {', '.join(n[0] for n in names)}")
    return "; ".join(said) or "none"


def _choose(con, protocol: str, track: str | None, path: Path) -> tuple[TrackExport, list[str]]:
    """The track holding the protocol's rows (`track` names one) and its latest ids."""
    if track is not None and track not in TRACKS:
        raise PublishedError(f"unknown track {track!r}; tracks: {', '.join(TRACKS)}")
    candidates = [TRACKS[track]] if track else list(TRACKS.values())
    found = [(t, ids) for t in candidates if (ids := _latest_ids(con, t, protocol))]
    if not found:
        where = f" of the {track} track" if track else ""
        raise PublishedError(
            f"no rows of protocol {protocol!r}{where} in {path}; the store holds "
            f"{_stored_protocols(con)}"
        )
    if len(found) > 1:
        names = ", ".join(t.track for t, _ in found)
        raise PublishedError(
            f"protocol {protocol!r} has rows in several tracks ({names}): name one with --track"
        )
    return found[0]


def _summary(con, track: TrackExport) -> dict[str, Any]:
    """What the manifest says of the rows: counts, methods, commits, hardware, CPU-hours."""
    have = columns.existing(con, track.runs)
    # As text ("1"), and NULL where the rows do not record it (stores older than it).
    version = "method_version" if "method_version" in have else "NULL"
    runs = con.execute(
        f"SELECT method, CAST({version} AS VARCHAR) AS method_version, fidelity, git_sha, git_dirty, hardware_profile_id, "
        f"status, cell_wall_s, finished_at, {', '.join(track.described)} "
        f"FROM {track.runs} JOIN ids USING (result_id)"
    ).df()
    methods = {
        str(name): {"method_version": _first(group["method_version"]),
                    "fidelity": _first(group["fidelity"])}
        for name, group in runs.groupby("method")
    }  # fmt: skip
    return {
        track.unit: int(len(runs)),
        "status": {str(k): int(v) for k, v in runs["status"].value_counts().items()},
        **track.describe(runs),
        "methods": methods,
        "commits": distinct(runs["git_sha"]),
        "any_dirty": bool(runs["git_dirty"].fillna(False).any()),
        "hardware_profiles": distinct(runs["hardware_profile_id"]),
        "cell_wall_hours": round(float(runs["cell_wall_s"].fillna(0).sum()) / 3600, 3),
        **_cpu_hours(con, track, have),
        "first_finished": str(runs["finished_at"].min()),
        "last_finished": str(runs["finished_at"].max()),
    }


def _cpu_hours(con, track: TrackExport, have: set[str]) -> dict[str, Any]:
    """The rows' CPU-hours, and how many rows counted which way (`cpu_hours_basis`):
    "measured" (the track's `cpu_seconds` columns, where the rows have them all) or
    "wall_x_threads" (the row's wall time x the torch threads of the hardware profile it
    ran on: a profile that did not record its threads counts as one, a failed cell's
    missing wall time as nothing)."""
    measured = (
        " + ".join(f"r.{c}" for c in track.cpu_seconds)
        if track.cpu_seconds and set(track.cpu_seconds) <= have
        else "NULL"
    )
    rows = (
        f"SELECT CAST({measured} AS DOUBLE) AS m, "
        "coalesce(r.cell_wall_s, 0) * coalesce(nullif(h.torch_threads, 0), 1) AS wall_x_threads "
        f"FROM {track.runs} r JOIN ids USING (result_id) "
        "LEFT JOIN hardware_profiles h ON h.profile_id = r.hardware_profile_id"
    )
    cpu_s, n_measured, n_rows = con.execute(
        f"SELECT sum(coalesce(m, wall_x_threads)), count(m), count(*) FROM ({rows})"
    ).fetchone()
    basis = {"measured": n_measured, "wall_x_threads": n_rows - n_measured}
    return {
        "cpu_hours": round(float(cpu_s or 0.0) / 3600, 3),
        "cpu_hours_basis": {k: int(n) for k, n in basis.items() if n},
    }


def _first(values) -> str | None:
    """A column's first recorded value, as text (None: none recorded)."""
    kept = values.dropna()
    return str(kept.iloc[0]) if len(kept) else None


def _drop_outdated(
    con, track: TrackExport, ids: list[str], versions: dict[str, int]
) -> tuple[list[str], dict[str, dict[str, int]]]:
    """`ids` less the rows of a method whose version has moved on (`versions`: each
    registered method's version today): such a row is stale the moment it is published,
    since today's code no longer expands to its cell. Returns the ids kept and, by
    method, how many rows were left out and their version against today's."""
    have = columns.existing(con, track.runs)
    if not versions or "method_version" not in have:
        return ids, {}
    # The registered method's name (a labelled entry's `method` is its label).
    name = "method_name" if "method_name" in have else "method"
    rows = con.execute(
        f"SELECT result_id, {name}, method_version FROM {track.runs} "
        "WHERE result_id IN (SELECT unnest(?))",
        [ids],
    ).fetchall()
    left: dict[str, dict[str, int]] = {}
    dropped = set()
    for result_id, method, version in rows:
        today = versions.get(method)
        if today is not None and version is not None and version < today:
            entry = left.setdefault(method, {"rows": 0, "version": version, "current": today})
            entry["rows"] += 1
            dropped.add(result_id)
    return [i for i in ids if i not in dropped], left


def publish(
    store: Store,
    protocol: str,
    out: Path,
    *,
    note: str = "",
    track: str | None = None,
    versions: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Write the protocol's rows under `out` (replacing what was there); returns the
    manifest. The track is the one whose tables hold the protocol (`track` names it
    where several do). With `versions` (each registered method's version today), rows of
    an older method version are left out, and the manifest says so (`left_out_outdated`)."""
    with store.connect(read_only=True) as con:
        chosen, ids = _choose(con, protocol, track, store.path)
        ids, outdated = _drop_outdated(con, chosen, ids, versions or {})
        out.mkdir(parents=True, exist_ok=True)
        con.execute("CREATE TEMP TABLE ids AS SELECT unnest(?) AS result_id", [ids])
        files = {}
        for table, (select, _) in chosen.parts().items():
            path = out / f"{table}.parquet"
            con.execute(
                f"COPY ({select}) TO '{_sql_path(path)}' (FORMAT parquet, COMPRESSION zstd)"
            )
            files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        copied, left_out = _copy_files(con, chosen, out)
        summary = _summary(con, chosen)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": out.name,
        "protocol": protocol,
        "track": chosen.track,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": note,
        **summary,
        **({"files_left_out": left_out} if left_out else {}),
        **({"left_out_outdated": outdated} if outdated else {}),
        "files": {**files, **copied},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def _copy_files(con, track: TrackExport, out: Path) -> tuple[dict, list[str]]:
    """The files the track's rows need, copied under out/files/ where the source still
    holds the bytes the store recorded; returns their manifest entries and the names of
    those left out (missing or changed)."""
    shutil.rmtree(out / FILES, ignore_errors=True)
    if track.files is None:
        return {}, []
    copied, left_out = {}, []
    for name, source, sha in con.execute(track.files).fetchall():
        if not Path(source).is_file() or (sha and sha256_file(source) != sha):
            left_out.append(name)
            continue
        target = out / FILES / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied[f"{FILES}/{name}"] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}
    return copied, sorted(left_out)


def _place_files(root: Path, folder: Path, manifest: dict) -> int:
    """The folder's files put below `root`, where the store keeps them (those there
    already kept); returns how many were added."""
    added = 0
    for name in manifest["files"]:
        target = root / name.removeprefix(f"{FILES}/")
        if name.startswith(f"{FILES}/") and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, target)
            added += 1
    return added


def track_of(manifest: dict[str, Any]) -> TrackExport:
    """The track a manifest publishes (none named: training, as every folder before)."""
    name = manifest.get("track", DEFAULT_TRACK)
    if name not in TRACKS:
        raise PublishedError(
            f"{manifest.get('name')} publishes track {name!r}, which this code does not know "
            f"({', '.join(TRACKS)})"
        )
    return TRACKS[name]


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
        if sha256_file(file) != meta["sha256"]:
            raise PublishedError(f"{file} differs from the checksum in {path}")
    return manifest


def load_published(store: Store, folder: Path) -> LoadReport:
    """Add a published folder's rows to the store (rows already there are kept as they are)."""
    manifest = read_manifest(folder)
    track = track_of(manifest)
    store.init()
    added = {}
    with store.connect() as con:
        con.execute("BEGIN TRANSACTION")
        for table, (_, keys) in track.parts().items():
            path = folder / f"{table}.parquet"
            added[table] = _load_table(con, track, table, keys, path, manifest["name"])
        if any(added.values()) and track.after_load is not None:
            track.after_load(con)
        # Loaded before: nothing was added, nothing to keep.
        con.execute("COMMIT" if any(added.values()) else "ROLLBACK")
    if track.file_root is not None:
        added[FILES] = _place_files(track.file_root(store.path), folder, manifest)
    return LoadReport(manifest["name"], added, track.track, added[track.runs])


def published_folders(root: Path) -> list[Path]:
    """The published datasets under `root` (each a folder with a manifest), by name."""
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def load_all_published(store: Store, root: Path) -> list[LoadReport]:
    """Every published dataset under `root` loaded into the store (each adds only the rows
    the store lacks, so loading again is cheap and changes nothing)."""
    return [load_published(store, folder) for folder in published_folders(root)]


def _load_table(
    con, track: TrackExport, table: str, keys: list[str], path: Path, origin: str
) -> int:
    """Insert the file's rows the table lacks (by `keys`); the attempt table's are marked
    with `origin`. Returns how many were added."""
    known = {track.runs: track.columns, "hardware_profiles": HARDWARE_PROFILE_COLUMNS}.get(table)
    source = f"read_parquet('{_sql_path(path)}')"
    new = f"SELECT s.* FROM {source} s ANTI JOIN {table} t USING ({', '.join(keys)})"
    before = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if known is None:
        con.execute(f"INSERT INTO {table} BY NAME {new}")
    else:
        # Columns an older publication lacks stay NULL, and a column this code does not
        # know is left out; the origin marks the imported rows.
        have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        picked = [c for c in known if c in have and c != "origin"]
        mark = ", ? AS origin" if table == track.runs else ""
        con.execute(
            f"INSERT INTO {table} BY NAME SELECT {', '.join(picked)}{mark} FROM ({new})",
            [origin] if mark else [],
        )
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before
