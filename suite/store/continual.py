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

from typing import Any

from suite.results import CellReport
from suite.store import columns
from suite.store.export import TrackExport, distinct
from suite.track_results import ContinualMeasured, ContinualMeasurements

CONTINUAL_RUN_LAYOUT: columns.Layout = columns.attempt_layout(
    own=(
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
    ),
    # origin: NULL for a row this store's runs wrote, else the published dataset's name
    # (suite/store/published.py), as in cell_runs.
    tail=(("versions", "JSON"), ("log_path", "VARCHAR"), ("origin", "VARCHAR")),
)
CONTINUAL_RUN_COLUMNS: dict[str, str] = columns.layout(CONTINUAL_RUN_LAYOUT, ContinualMeasurements)

CONTINUAL_TABLES = [
    columns.create_table("continual_runs", CONTINUAL_RUN_COLUMNS),
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


def _describe(runs) -> dict[str, Any]:
    return {
        "tasks": sorted({str(t) for seq in runs["sequence"].dropna() for t in seq}),
        "strategies": distinct(runs["strategy"]),
    }


# A continual protocol as a publication (suite/store/published.py): the latest attempt of
# each continual cell and its accuracy matrix. The pages read the majority class from the
# row itself (`task_baselines`), so no baselines rows go with it.
CONTINUAL_EXPORT = TrackExport(
    track="continual",
    runs="continual_runs",
    columns=CONTINUAL_RUN_COLUMNS,
    latest="SELECT result_id FROM continual_results WHERE protocol = ? ORDER BY cell_id",
    unit="cells",
    extra={
        "continual_scores": (
            "SELECT s.* FROM continual_scores s JOIN ids USING (result_id) "
            "ORDER BY s.result_id, s.stage, s.position",
            ["result_id", "stage", "position"],
        )
    },
    described=("sequence", "strategy"),
    describe=_describe,
)


def continual_attempt(
    cell, report: CellReport, provenance: dict[str, Any], log_path: str | None
) -> columns.Attempt:
    """The continual_runs row and its score rows for one report (a timeout or a crashed
    worker delivers a plain outcome: then the row has no measurements)."""
    measured = report.measured
    ok = isinstance(measured, ContinualMeasured)
    m = measured.measurements if ok else ContinualMeasurements()
    row = {
        **m.model_dump(exclude={"scores", "baseline"}),
        **columns.attempt_fields(cell.cell_id, report, provenance, log_path),
        **columns.method_fields(cell.method),
        "matrix": cell.matrix, "strategy": cell.strategy, "model": cell.model.name,
        "base_storage": cell.base_storage, "seed": cell.seed, "profile": cell.profile.name,
        "budget": cell.budget.model_dump_json(), "protocol": cell.protocol_name,
    }  # fmt: skip
    if not m.sequence:  # also a plain outcome's row names its sequence
        row["sequence"] = cell.sequence
    rows = [m.baseline, *m.scores] if m.scores else []
    scores = [
        (row["result_id"], cell.cell_id, stage, m.sequence[stage - 1] if stage else None, task,
         j, m.metrics[j], value)
        for stage, values in enumerate(rows)
        for j, (task, value) in enumerate(zip(m.sequence, values, strict=True))
    ]  # fmt: skip
    return columns.Attempt("continual_runs", CONTINUAL_RUN_COLUMNS, row, "continual_scores", scores)
