"""The post-hoc part of the store: artifacts, post-hoc runs and their scores, and views.

- `artifacts`: one row per trained cell that saved one (path, bytes, sha256, kind, the
  result that wrote it); a rerun of the cell replaces the row.
- `posthoc_runs`: append-only, one row per attempt at a post-hoc cell (its status,
  inputs, costs and provenance), like `cell_runs` for trained cells;
- `posthoc_scores`: its metrics per source task and split, beside the source's own.

Views (read by the leaderboard's Merging and Compression pages and `peftbench query`):
`posthoc_results` (latest attempt of each post-hoc cell), `merging` (one row per merge
cell and source task: normalised = merged / that task's own adapter, test split, primary
metric) and `compression` (one row per compress cell: the source task's primary test
metric at the method's level, beside the dense model's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from suite.cells import Cell
from suite.results import CellReport
from suite.specs.posthoc import STAGE_KINDS
from suite.store import columns
from suite.track_results import PosthocMeasured, PosthocMeasurements

ARTIFACT_COLUMNS: dict[str, str] = {
    "cell_id": "VARCHAR PRIMARY KEY",
    "result_id": "VARCHAR",
    "path": "VARCHAR NOT NULL",
    "bytes": "BIGINT NOT NULL",
    "sha256": "VARCHAR NOT NULL",
    "kind": "VARCHAR",
    "method": "VARCHAR",
    "task": "VARCHAR",
    "model": "VARCHAR",
    "seed": "INTEGER",
    "created_at": "TIMESTAMP",
}

# The posthoc_runs table: the store's own columns (name, SQL type) and, by bare name,
# PosthocMeasurements' (suite/track_results.py), in the order of the stores already written;
# a new field of PosthocMeasurements is appended (suite/store/columns.py).
POSTHOC_RUN_LAYOUT: columns.Layout = columns.attempt_layout(
    stage=(("stage", "VARCHAR"), ("stage_name", "VARCHAR")),
    own=(
        ("method_version", "INTEGER"),
        "method_source_hash",
        ("params", "JSON"),
        ("method_yaml", "VARCHAR"),
        ("method_hash", "VARCHAR"),
        ("input_cell_ids", "VARCHAR[]"),
        ("input_methods", "VARCHAR[]"),
        ("input_tasks", "VARCHAR[]"),
        "input_sha256",
        ("model", "VARCHAR"),
        ("seed", "INTEGER"),
        ("profile", "VARCHAR"),
        ("calibration", "JSON"),
        ("budget", "JSON"),
        "stage_time_s",
        "stored_bytes",
        "stored_params",
        "heads_bytes",
        "sparsity",
        "level",
        "level_label",
        "pattern_ok",
        "nonzero_params",
        "target_params",
        "total_params",
        "latency_s",
        "source_latency_s",
        "train_steps",
        "train_wall_s",
        "device",
    ),
    tail=(
        ("versions", "JSON"),
        ("hardware", "JSON"),
        "notes",
        ("log_path", "VARCHAR"),
        # The benchmark protocol of its inputs' rows (suite/store/protocols.py).
        ("protocol", "VARCHAR"),
    ),
)
POSTHOC_RUN_COLUMNS: dict[str, str] = columns.layout(POSTHOC_RUN_LAYOUT, PosthocMeasurements)

POSTHOC_TABLES = [
    columns.create_table("artifacts", ARTIFACT_COLUMNS),
    columns.create_table("posthoc_runs", POSTHOC_RUN_COLUMNS),
    """CREATE TABLE IF NOT EXISTS posthoc_scores (
        result_id VARCHAR NOT NULL, cell_id VARCHAR NOT NULL, task VARCHAR NOT NULL,
        split VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE, source_value DOUBLE,
        normalised DOUBLE, higher_is_better BOOLEAN, is_primary BOOLEAN)""",
]

_LATEST = """CREATE OR REPLACE VIEW posthoc_results AS
SELECT * FROM posthoc_runs
QUALIFY row_number() OVER (PARTITION BY cell_id ORDER BY finished_at DESC, result_id DESC) = 1"""


def _stages(view: str) -> str:
    """The SQL list of the stage kinds whose rows `view` shows."""
    return ", ".join(f"'{k}'" for k, kind in STAGE_KINDS.items() if kind.view == view)


_MERGING = """CREATE OR REPLACE VIEW merging AS
SELECT r.cell_id, r.matrix, r.stage_name, r.method, r.method_name, r.family, r.fidelity,
    r.method_version, r.params, r.model, r.seed, r.profile, r.status, r.error,
    r.input_methods, r.input_tasks, r.input_cell_ids, s.task, s.metric,
    s.value AS merged_value, s.source_value AS own_value, s.normalised,
    r.stored_bytes, r.stored_params, r.heads_bytes, r.stage_time_s AS merge_time_s,
    r.train_steps, r.train_wall_s, r.budget, r.finished_at, r.protocol
FROM posthoc_results r
LEFT JOIN posthoc_scores s
    ON s.result_id = r.result_id AND s.split = 'test' AND s.is_primary
WHERE r.stage IN ({stages})""".format(stages=_stages("merging"))

_COMPRESSION = """CREATE OR REPLACE VIEW compression AS
SELECT r.cell_id, r.matrix, r.stage_name, r.method, r.method_name, r.family, r.fidelity,
    r.method_version, r.params, r.model, r.seed, r.profile, r.status, r.error,
    r.input_methods[1] AS source_method, r.input_cell_ids[1] AS source_cell_id,
    s.task, s.metric, r.level, r.level_label, r.sparsity, r.pattern_ok,
    s.value, s.source_value AS dense_value, s.normalised,
    r.latency_s, r.source_latency_s AS dense_latency_s, r.stored_bytes, r.nonzero_params,
    r.target_params, r.total_params, r.train_steps, r.train_wall_s, r.budget,
    r.stage_time_s AS compress_time_s, r.finished_at, r.protocol
FROM posthoc_results r
LEFT JOIN posthoc_scores s
    ON s.result_id = r.result_id AND s.split = 'test' AND s.is_primary
WHERE r.stage IN ({stages})""".format(stages=_stages("compression"))

POSTHOC_VIEWS = [_LATEST, _MERGING, _COMPRESSION]
POSTHOC_VIEW_NAMES = ("posthoc_results", "merging", "compression")


def record_artifact(con, cell: Cell, measurements, result_id: str) -> None:
    """The trained cell's saved artifact (if it saved one), replacing an older row."""
    if not getattr(measurements, "artifact_sha256", None):
        return
    row = {
        "cell_id": cell.cell_id,
        "result_id": result_id,
        "path": measurements.artifact_path,
        "bytes": measurements.artifact_bytes,
        "sha256": measurements.artifact_sha256,
        "kind": measurements.artifact_kind,
        "method": cell.method.label,
        "task": cell.task.name,
        "model": cell.model.name,
        "seed": cell.seed,
        "created_at": datetime.now(UTC).replace(tzinfo=None),
    }
    columns.insert_row(con, "artifacts", ARTIFACT_COLUMNS, row, conflict="REPLACE")


def posthoc_attempt(
    cell, report: CellReport, provenance: dict[str, Any], log_path: str | None
) -> columns.Attempt:
    """The posthoc_runs row and its score rows for one report."""
    measured = report.measured
    m = measured.measurements if isinstance(measured, PosthocMeasured) else PosthocMeasurements()
    row = {
        **m.model_dump(exclude={"scores", "input_sha256"}),
        **columns.attempt_fields(cell.cell_id, report, provenance, log_path),
        **columns.method_fields(cell.method),
        "matrix": cell.matrix, "stage": cell.method.stage, "stage_name": cell.stage_name,
        "input_cell_ids": list(cell.input_ids),
        "input_methods": [c.method.label for c in cell.inputs], "input_tasks": cell.tasks,
        "input_sha256": list(m.input_sha256) or None, "model": cell.model.name, "seed": cell.seed,
        "profile": cell.profile.name,
        "calibration": cell.calibration.model_dump_json() if cell.calibration else None,
        "budget": cell.budget.model_dump_json() if cell.budget else None,
        "protocol": cell.inputs[0].protocol_name if cell.inputs else None,
    }  # fmt: skip
    scores = [
        (row["result_id"], cell.cell_id, s.task, s.split, s.metric, s.value, s.source_value,
         s.normalised, s.higher_is_better, s.primary)
        for s in m.scores
    ]  # fmt: skip
    return columns.Attempt("posthoc_runs", POSTHOC_RUN_COLUMNS, row, "posthoc_scores", scores)
