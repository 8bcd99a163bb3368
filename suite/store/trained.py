"""The trained cells' rows: a result as its `cell_runs` row, its metrics, predictions and
the task's baselines (the post-hoc and continual kinds have modules of their own)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from suite.cells import Cell
from suite.hashing import spec_hash
from suite.results import CellResult
from suite.store.columns import method_fields, spec_yaml
from suite.store.comparisons import refresh_comparisons
from suite.store.export import TrackExport, distinct
from suite.store.schema import CELL_RUN_COLUMNS, rebuild_latest


def result_row(cell: Cell, result: CellResult, provenance: dict[str, Any]) -> dict[str, Any]:
    task = cell.task
    primary = task.primary_metric
    row = result.model_dump(
        exclude={"val_metrics", "test_metrics", "baseline_val", "baseline_test"}
    )
    row.update(
        result_id=uuid.uuid4().hex,
        matrix=cell.matrix,
        **method_fields(cell.method),
        method_kind=cell.method.kind,
        size_params=list(cell.method.size_params),
        model=cell.model.name,
        task=task.name,
        seed=cell.seed,
        profile=cell.profile.name,
        lr=cell.method.lr,
        budget=cell.budget.model_dump_json(),
        task_yaml=spec_yaml(task),
        model_yaml=spec_yaml(cell.model),
        task_hash=spec_hash(task),
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


def insert_predictions(con, result_id: str, result: CellResult) -> None:
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


def baseline_rows(cell: Cell, result: CellResult) -> list[tuple]:
    task_hash = spec_hash(cell.task)
    return [
        (cell.task.name, task_hash, cell.task.baseline, split, name, value)
        for split, values in (("validation", result.baseline_val), ("test", result.baseline_test))
        for name, value in values.items()
    ]


def _describe(runs) -> dict[str, Any]:
    return {
        "phases": {
            str(k): int(v) for k, v in runs["phase"].fillna("single").value_counts().items()
        },
        "tasks": distinct(runs["task"]),
    }


def _after_load(con) -> None:
    """`latest_results` and the comparisons are kept by Store.write; loaded rows bypass it."""
    rebuild_latest(con)
    refresh_comparisons(con)


# A training protocol as a publication (suite/store/published.py): the latest attempt of
# each cell with its metrics, per-example predictions and its tasks' baselines.
TRAINING_EXPORT = TrackExport(
    track="training",
    runs="cell_runs",
    columns=CELL_RUN_COLUMNS,
    latest="SELECT result_id FROM latest_results WHERE protocol = ? ORDER BY cell_id",
    unit="cells",
    extra={
        "metrics": ("SELECT m.* FROM metrics m JOIN ids USING (result_id)",
                    ["result_id", "split", "metric"]),
        "predictions": ("SELECT p.* FROM predictions p JOIN ids USING (result_id) "
                        "ORDER BY p.result_id, p.split, p.example",
                        ["result_id", "split", "example"]),
        "baselines": ("SELECT * FROM baselines WHERE task_hash IN (SELECT DISTINCT task_hash "
                      "FROM cell_runs JOIN ids USING (result_id))", ["task_hash", "split", "metric"]),
    },
    described=("phase", "task"),
    describe=_describe,
    after_load=_after_load,
    # A cell is one worker process: its measured CPU where the row has it (rows from
    # before the column count wall x threads, which on a shared machine counts waiting).
    cpu_seconds=("cell_cpu_s",),
)  # fmt: skip
