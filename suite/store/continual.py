"""The continual part of the store: continual cells' runs, their accuracy matrices, views.

- `continual_runs`: append-only, one row per attempt at a continual cell (its status,
  method, sequence, ACC/BWT/FWT and costs, provenance), like `cell_runs`;
- `continual_scores`: its accuracy matrix, one row per (stage, task): stage 0 is the
  baseline (before any training), stage i the score after training through task i
  (1-based, as GEM counts), `trained` the task that stage trained on.

Views (the leaderboard's Continual page, `peftbench query`): `continual_results` (the
latest attempt of each cell) and `continual_matrix` (its scores, labelled).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from suite.cells import spec_hash
from suite.results import CellReport, ContinualMeasured, ContinualMeasurements
from suite.store.columns import add_missing, insert_row, layout, spec_yaml

CONTINUAL_RUN_LAYOUT: tuple[str | tuple[str, str], ...] = (
    ("result_id", "VARCHAR PRIMARY KEY"),
    ("cell_id", "VARCHAR NOT NULL"),
    ("run_id", "VARCHAR"),
    ("status", "VARCHAR NOT NULL"),
    ("error", "VARCHAR"),
    ("matrix", "VARCHAR"),
    ("method", "VARCHAR"),
    ("method_name", "VARCHAR"),
    ("family", "VARCHAR"),
    ("fidelity", "VARCHAR"),
    ("method_version", "INTEGER"),
    ("params", "JSON"),
    ("method_yaml", "VARCHAR"),
    ("method_hash", "VARCHAR"),
    ("strategy", "VARCHAR"),
    ("model", "VARCHAR"),
    ("base_storage", "VARCHAR"),
    ("seed", "INTEGER"),
    ("profile", "VARCHAR"),
    ("budget", "JSON"),
    ("protocol", "VARCHAR"),
    ("hostname", "VARCHAR"),
    ("worker_pid", "INTEGER"),
    ("hardware_profile_id", "VARCHAR"),
    ("started_at", "VARCHAR"),
    ("finished_at", "TIMESTAMP"),
    ("cell_wall_s", "DOUBLE"),
    ("attempts", "INTEGER"),
    ("git_sha", "VARCHAR"),
    ("git_dirty", "BOOLEAN"),
    ("versions", "JSON"),
    ("log_path", "VARCHAR"),
)
CONTINUAL_RUN_COLUMNS: dict[str, str] = layout(CONTINUAL_RUN_LAYOUT, ContinualMeasurements)

CONTINUAL_TABLES = [
    "CREATE TABLE IF NOT EXISTS continual_runs ("
    + ", ".join(f"{n} {k}" for n, k in CONTINUAL_RUN_COLUMNS.items())
    + ")",
    """CREATE TABLE IF NOT EXISTS continual_scores (
        result_id VARCHAR NOT NULL, cell_id VARCHAR NOT NULL, stage INTEGER NOT NULL,
        trained VARCHAR, task VARCHAR NOT NULL, position INTEGER NOT NULL,
        metric VARCHAR NOT NULL, value DOUBLE)""",
]

_LATEST = """CREATE OR REPLACE VIEW continual_results AS
SELECT * FROM continual_runs
QUALIFY row_number() OVER (PARTITION BY cell_id ORDER BY finished_at DESC, result_id DESC) = 1"""

_MATRIX = """CREATE OR REPLACE VIEW continual_matrix AS
SELECT r.cell_id, r.matrix, r.method, r.strategy, r.model, r.seed, r.protocol,
    s.stage, s.trained, s.position, s.task, s.metric, s.value
FROM continual_results r JOIN continual_scores s ON s.result_id = r.result_id"""

CONTINUAL_VIEWS = [_LATEST, _MATRIX]


def add_missing_continual_columns(con) -> None:
    add_missing(con, "continual_runs", CONTINUAL_RUN_COLUMNS)


def continual_row(cell, report: CellReport, provenance: dict[str, Any], log_path: str | None):
    """The continual_runs row and its score rows for one report (a timeout or a crashed
    worker delivers a plain outcome: then the row has no measurements)."""
    measured = report.measured
    ok = isinstance(measured, ContinualMeasured)
    m = measured.measurements if ok else ContinualMeasurements()
    method, result_id = cell.method, uuid.uuid4().hex
    row = {
        **m.model_dump(exclude={"scores", "baseline"}),
        "result_id": result_id, "cell_id": cell.cell_id, "run_id": provenance.get("run_id"),
        "status": measured.status, "error": measured.error, "matrix": cell.matrix,
        "method": method.label, "method_name": method.name, "family": method.family,
        "fidelity": method.fidelity, "method_version": method.method_version,
        "params": json.dumps(method.params),
        "method_yaml": spec_yaml(method),
        "method_hash": spec_hash(method), "strategy": cell.strategy, "model": cell.model.name,
        "base_storage": cell.base_storage, "seed": cell.seed, "profile": cell.profile.name,
        "budget": cell.budget.model_dump_json(), "protocol": cell.protocol_name,
        "hostname": report.placement.hostname, "worker_pid": report.placement.worker_pid,
        "hardware_profile_id": report.placement.hardware_profile_id,
        "started_at": measured.started_at, "finished_at": datetime.now(UTC).replace(tzinfo=None),
        "cell_wall_s": measured.cell_wall_s, "attempts": report.attempts,
        "git_sha": provenance.get("git_sha"), "git_dirty": provenance.get("git_dirty"),
        "versions": json.dumps(provenance.get("versions", {})), "log_path": log_path,
    }  # fmt: skip
    if not m.sequence:  # also a plain outcome's row names its sequence
        row["sequence"] = cell.sequence
    rows = [m.baseline, *m.scores] if m.scores else []
    scores = [
        (result_id, cell.cell_id, stage, m.sequence[stage - 1] if stage else None, task, j,
         m.metrics[j], value)
        for stage, values in enumerate(rows)
        for j, (task, value) in enumerate(zip(m.sequence, values, strict=True))
    ]  # fmt: skip
    return row, scores


def write_continual(con, cell, report: CellReport, provenance: dict, log_path: str | None) -> str:
    """Insert one continual attempt and its accuracy matrix (the caller holds a transaction)."""
    row, scores = continual_row(cell, report, provenance, log_path)
    insert_row(con, "continual_runs", CONTINUAL_RUN_COLUMNS, row)
    if scores:
        con.executemany("INSERT INTO continual_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)", scores)
    return row["result_id"]
