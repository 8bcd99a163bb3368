"""The typed result of one cell, built once by the driver from what each layer returns.

- the runner returns a `Measured`: the cell's outcome and its `Measurements` (metrics,
  counts, costs), or only an outcome when it failed;
- the worker wraps it in a `CellReport` with its `Placement` (where, on what hardware,
  with what log);
- an executor delivers reports (and writes the reports of cells that could not answer
  themselves: timeouts, crashed workers), adding the attempt count;
- the driver builds the `CellResult` row from a report (`CellResult.assemble`), which the
  store writes. No layer edits another's part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model

from suite.outcome import CUT_MARK, ERROR_CHARS, Outcome, Status, error_tail
from suite.result_columns import Elsewhere, Int32, SqlType
from suite.track_results import (
    ContinualMeasured,
    ContinualMeasurements,
    FederatedMeasured,
    FederatedMeasurements,
    PosthocMeasured,
    PosthocMeasurements,
    PosthocScore,
)

# The outcome (suite/outcome.py), the column markers (suite/result_columns.py) and the
# other tracks' result types (suite/track_results.py) were defined here once; code and
# tests still import them from this module.
__all__ = [
    "CUT_MARK", "ERROR_CHARS", "PHASES", "RUNNER_PHASES", "SCHEDULING_PHASES", "CellReport",
    "CellResult", "ContinualMeasured", "ContinualMeasurements", "Elsewhere",
    "FederatedMeasured", "FederatedMeasurements", "Int32", "Measured", "Measurements",
    "Outcome", "Phases", "Placement", "PosthocMeasured", "PosthocMeasurements",
    "PosthocScore", "SplitPredictions", "SqlType", "StageOutcome", "Status", "error_tail",
    "phase_column",
]  # fmt: skip


class SplitPredictions(BaseModel):
    """Per-example predictions on one split, in the split's order (the example id is the
    position: stable across cells of the same task). `score` is the margin between the two
    best outputs (classes, choices), the value (regression), or None (generated text)."""

    pred: list[float | str | None]
    gold: list[float | str | None]
    score: list[float | None]


class Measurements(BaseModel):
    """Everything a trained cell measured. Costs are None where they could not be measured."""

    val_metrics: Annotated[dict[str, float], Elsewhere("metrics")] = Field(default_factory=dict)
    test_metrics: Annotated[dict[str, float], Elsewhere("metrics")] = Field(default_factory=dict)
    # A tuning trial's test metrics, kept apart (split "trial_test"): selection reads only
    # validation; the tuning-budget curves read these.
    trial_test_metrics: Annotated[dict[str, float], Elsewhere("metrics")] = Field(
        default_factory=dict
    )
    # Per split ("validation", "test", or "trial_test" for a trial).
    predictions: dict[str, SplitPredictions] = Field(default_factory=dict, exclude=True)
    baseline_val: Annotated[dict[str, float], Elsewhere("baselines")] = Field(default_factory=dict)
    baseline_test: Annotated[dict[str, float], Elsewhere("baselines")] = Field(default_factory=dict)
    trainable_params: int | None = None
    adapter_params: int | None = None
    total_params: int | None = None
    peak_memory_bytes: int | None = None
    peak_memory_isolated: bool | None = None
    # What the worker held when the cell started (CPU: resident bytes; CUDA: allocated),
    # not counted in the peak, and the bytes of its cached backbones among that.
    memory_baseline_bytes: int | None = None
    cached_model_bytes: int | None = None
    train_wall_s: float | None = None
    train_steps: Int32 | None = None
    samples_per_s: float | None = None
    step_time_median_s: float | None = None
    latency_unmerged_s: float | None = None
    latency_merged_s: float | None = None
    merge_time_s: float | None = None
    merge_max_abs_diff: float | None = None
    adapter_bytes: int | None = None
    # Bytes of the optimiser's state tensors (moments, step counters stored as tensors,
    # a method's projections or chosen coordinates), at their largest over the training
    # steps; the optimiser part of the memory breakdown below.
    optimizer_state_bytes: int | None = None
    base_dtype: str | None = None
    adapter_dtype: str | None = None
    method_source_hash: str | None = None
    final_train_loss: float | None = None
    loss_curve: list[float] = Field(default_factory=list)
    device: str | None = None
    train_tokens: int | None = None
    # Training tokens (padded, as the model ran them) per second of the training loop.
    tokens_per_s: float | None = None
    train_flops: float | None = None
    # The same on real tokens only (the attention mask's ones): padding is not useful work.
    train_real_tokens: int | None = None
    train_flops_real: float | None = None
    # The base's storage (suite/models/storage.py; the preset's dtype when unset) and its
    # bytes as stored while training and for inference (LoRAM trains on a pruned base).
    base_storage: str | None = None
    base_bytes: int | None = None
    inference_base_bytes: int | None = None
    # Training memory broken down (suite/train/memory.py): exact tensor bytes of frozen
    # and trainable weights, gradients (and optimizer_state_bytes above), and the
    # measured peak beyond those four.
    mem_frozen_weights_bytes: int | None = None
    mem_trainable_weights_bytes: int | None = None
    mem_gradients_bytes: int | None = None
    mem_activations_other_bytes: int | None = None
    # Training examples the method held out for its own outer loop (Method.train_holdout).
    train_holdout_examples: Int32 | None = None
    # Forgetting (suite/tasks/forgetting.py): loss on the matrix's reference texts.
    reference_loss_before: float | None = None
    reference_loss_after: float | None = None
    forgetting_delta_loss: float | None = None
    # The saved artifact (safetensors under results/artifacts/, by cell id), when saved.
    artifact_path: Annotated[str | None, Elsewhere("artifacts")] = None
    artifact_bytes: Annotated[int | None, Elsewhere("artifacts")] = None
    artifact_sha256: Annotated[str | None, Elsewhere("artifacts")] = None
    artifact_kind: Annotated[str | None, Elsewhere("artifacts")] = None


# Where a cell's wall time goes, in order (suite/train/phases.py): Ray's dispatch of the
# cell to its worker, the worker's own work around the cell (threads, hardware profile,
# placement, log), the runner's steps (data, model, the method's prepare, training,
# evaluation, cost measurements, artifact save, and what none of them covers), and the
# driver's work from the worker's result to the stored row. They add up to cell_total_s.
RUNNER_PHASES = (
    "data_load", "model_load", "prepare", "train", "evaluate", "measure", "save", "other",
)  # fmt: skip
SCHEDULING_PHASES = ("dispatch", "worker", "result_to_row")
PHASES = ("dispatch", "worker", *RUNNER_PHASES, "result_to_row")


def phase_column(phase: str) -> str:
    return f"phase_{phase}_s"


# A row's phase columns (seconds), whether the model and the tokenised data came from the
# worker's caches, and the cell's wall time from dispatch to stored row.
Phases = create_model(
    "Phases",
    **{phase_column(p): (float | None, None) for p in PHASES},
    model_cached=(bool | None, None),
    data_cached=(bool | None, None),
    cell_total_s=(float | None, None),
)


class Measured(Outcome):
    """What the runner returns for one cell."""

    measurements: Measurements = Field(default_factory=Measurements)
    # Seconds per runner phase (RUNNER_PHASES), also for a cell that failed part-way.
    phases: dict[str, float] = Field(default_factory=dict)
    # CPU seconds of the process while the cell ran (`time.process_time`, every thread):
    # a cell has its worker process to itself, so on a shared machine this is what it
    # used, where wall time x threads counts the time it waited for a core too.
    cell_cpu_s: float | None = None
    model_cached: bool | None = None
    data_cached: bool | None = None


class Placement(BaseModel):
    """Where a cell ran (the worker's part), and the hardware profile it recorded there."""

    hostname: str | None = None
    node_id: str | None = None
    worker_pid: Int32 | None = None
    hardware_profile_id: str | None = None
    hardware_profile: dict[str, Any] | None = None
    device_mismatch: bool | None = None
    device_mismatch_detail: str | None = None
    gpu_fraction: float | None = None


class CellReport(BaseModel):
    """What an executor delivers for one cell (a trained cell's or a post-hoc cell's)."""

    measured: Measured | PosthocMeasured | ContinualMeasured | FederatedMeasured
    placement: Placement = Field(default_factory=Placement)
    attempts: int = 1
    log: str = ""
    # Where the worker wrote `log` line by line as the cell ran (suite/scheduler/worker.py),
    # when the run's log folder was on its machine; the driver then leaves the file as is.
    live_log: str | None = None
    # Scheduling (suite/scheduler/worker.py): Ray's dispatch (submitted to the worker's
    # start), the worker's time outside the runner, and when it finished (epoch seconds),
    # from which the driver's result-to-row time is counted.
    dispatch_s: float | None = None
    worker_s: float | None = None
    finished_unix: float | None = None


@dataclass(frozen=True)
class StageOutcome:
    """What the run summary and the progress display keep of a post-hoc or continual
    result: its status, error and host, and one line (the error's end, or a summary of
    the scores)."""

    status: str
    error: str | None
    hostname: str | None
    summary: str

    @classmethod
    def of(cls, report: CellReport, kind: type[Outcome], summary: Callable[[Any], str]):
        """`summary(measured)` as the line of an ok result of type `kind`."""
        measured = report.measured
        text = (measured.error or "")[-200:]
        if measured.status == "ok" and isinstance(measured, kind):
            text = summary(measured)
        return cls(measured.status, measured.error, report.placement.hostname, text)


class CellResult(Measurements, Placement, Phases):
    """One cell's row: the runner's measurements, the worker's placement, the attempts,
    and what follows from them (achieved FLOP/s against the calibrated peak)."""

    cell_id: str
    status: Status
    error: str | None = None
    started_at: str | None = None
    cell_wall_s: float | None = None
    cell_cpu_s: float | None = None
    hardware_profile: dict[str, Any] | None = Field(default=None, exclude=True)
    achieved_flops_per_s: float | None = None
    flops_fraction_of_peak: float | None = None
    # The same counting real tokens only (padding excluded).
    achieved_flops_per_s_real: float | None = None
    flops_fraction_of_peak_real: float | None = None
    attempts: Int32 = 1
    log: str = Field(default="", exclude=True)
    log_path: str | None = None
    # Not stored: when the worker finished, for the store's result-to-row phase.
    finished_unix: float | None = Field(default=None, exclude=True)

    @classmethod
    def assemble(cls, cell_id: str, report: CellReport, log_path: str | None = None) -> CellResult:
        measured, placement = report.measured, report.placement
        m = measured.measurements
        peak = (placement.hardware_profile or {}).get("matmul_flops")
        achieved, peak_fraction = _rate(m.train_flops, m.train_wall_s, peak)
        achieved_real, peak_fraction_real = _rate(m.train_flops_real, m.train_wall_s, peak)
        return cls(
            **m.model_dump(),
            predictions=m.predictions,  # excluded from dumps (the store writes them apart)
            **placement.model_dump(),
            cell_id=cell_id,
            status=measured.status,
            error=measured.error,
            started_at=measured.started_at,
            cell_wall_s=measured.cell_wall_s,
            cell_cpu_s=measured.cell_cpu_s,
            achieved_flops_per_s=achieved,
            flops_fraction_of_peak=peak_fraction,
            achieved_flops_per_s_real=achieved_real,
            flops_fraction_of_peak_real=peak_fraction_real,
            attempts=report.attempts,
            log=report.log,
            log_path=log_path,
            **_phase_fields(report),
        )

    def stored(self, result_to_row_s: float) -> dict[str, float]:
        """The driver's phase and the total, once the row is about to be committed."""
        if self.cell_wall_s is None or self.phase_worker_s is None:
            return {}
        total = sum(getattr(self, phase_column(p)) or 0.0 for p in PHASES[:-1])
        return {
            phase_column("result_to_row"): result_to_row_s,
            "cell_total_s": total + result_to_row_s,
        }


def _rate(flops: float | None, wall_s: float | None, peak: float | None):
    """FLOP/s over the training loop, and that as a fraction of the calibrated peak."""
    if not flops or not wall_s:
        return None, None
    achieved = flops / wall_s
    return achieved, (achieved / peak if peak else None)


def _phase_fields(report: CellReport) -> dict[str, Any]:
    measured = report.measured
    if not isinstance(measured, Measured):
        return {}
    fields = {phase_column(p): measured.phases.get(p) for p in RUNNER_PHASES}
    return {
        **fields,
        phase_column("dispatch"): report.dispatch_s,
        phase_column("worker"): report.worker_s,
        "model_cached": measured.model_cached,
        "data_cached": measured.data_cached,
        "finished_unix": report.finished_unix,
    }
