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

from typing import Any, Literal

from pydantic import BaseModel, Field

# input_missing: a post-hoc cell whose input cell is not stored ok, or saved no artifact;
# input_invalid: one whose input artifact fails its checksum. Neither ever retrains.
Status = Literal[
    "ok", "failed", "nan", "oom", "timeout", "crashed", "input_missing", "input_invalid"
]


class SplitPredictions(BaseModel):
    """Per-example predictions on one split, in the split's order (the example id is the
    position: stable across cells of the same task). `score` is the margin between the two
    best outputs (classes, choices), the value (regression), or None (generated text)."""

    pred: list[float | str | None]
    gold: list[float | str | None]
    score: list[float | None]


class Measurements(BaseModel):
    """Everything a trained cell measured. Costs are None where they could not be measured."""

    val_metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)
    # A tuning trial's test metrics, kept apart (split "trial_test"): selection reads only
    # validation; the tuning-budget curves read these.
    trial_test_metrics: dict[str, float] = Field(default_factory=dict)
    # Per split ("validation", "test", or "trial_test" for a trial).
    predictions: dict[str, SplitPredictions] = Field(default_factory=dict, exclude=True)
    baseline_val: dict[str, float] = Field(default_factory=dict)
    baseline_test: dict[str, float] = Field(default_factory=dict)
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
    train_steps: int | None = None
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
    train_holdout_examples: int | None = None
    # Forgetting (suite/tasks/forgetting.py): loss on the matrix's reference texts.
    reference_loss_before: float | None = None
    reference_loss_after: float | None = None
    forgetting_delta_loss: float | None = None
    # The saved artifact (safetensors under results/artifacts/, by cell id), when saved.
    artifact_path: str | None = None
    artifact_bytes: int | None = None
    artifact_sha256: str | None = None
    artifact_kind: str | None = None


class Measured(BaseModel):
    """What the runner returns for one cell."""

    status: Status
    error: str | None = None
    started_at: str | None = None
    cell_wall_s: float | None = None
    measurements: Measurements = Field(default_factory=Measurements)


class PosthocScore(BaseModel):
    """One metric of a post-hoc result on one task and split, beside the same metric of
    its source (the task's own adapter for a merge, the dense model for a compression)."""

    task: str
    split: str
    metric: str
    value: float | None = None
    source_value: float | None = None
    higher_is_better: bool = True
    primary: bool = False

    @property
    def normalised(self) -> float | None:
        if self.value is None or not self.source_value:
            return None
        return self.value / self.source_value


class PosthocMeasurements(BaseModel):
    """What a post-hoc cell measured (suite/posthoc/run.py)."""

    scores: list[PosthocScore] = Field(default_factory=list)
    # Seconds the merge or the compression itself took (not loading, not evaluation).
    stage_time_s: float | None = None
    # What must be kept: the merged update (RMM: its basis and coefficients), or the
    # compressed model's weights in their compact form; task heads counted apart.
    stored_bytes: int | None = None
    stored_params: int | None = None
    heads_bytes: int | None = None
    # Compression: share of the targeted weights that are zero, whether an N:M pattern
    # holds in every group, nonzeros over the targets, the targets' size.
    sparsity: float | None = None
    # The nominal level the method was asked for (the x axis of the quality-against-
    # sparsity curve: 0.5 for 50% or 2:4) and its label ("50%", "2:4").
    level: float | None = None
    level_label: str | None = None
    pattern_ok: bool | None = None
    nonzero_params: int | None = None
    target_params: int | None = None
    total_params: int | None = None
    # Median latency per test batch of the result and of its source (dense kernels).
    latency_s: float | None = None
    source_latency_s: float | None = None
    # Stages that train (Sparse Model Soups): steps and seconds over every retraining.
    train_steps: int | None = None
    train_wall_s: float | None = None
    device: str | None = None
    method_source_hash: str | None = None
    # The sha256 of every input artifact, as verified before use.
    input_sha256: list[str] = Field(default_factory=list)
    notes: str | None = None


class PosthocMeasured(BaseModel):
    """What the post-hoc runner returns for one cell."""

    status: Status
    error: str | None = None
    started_at: str | None = None
    cell_wall_s: float | None = None
    measurements: PosthocMeasurements = Field(default_factory=PosthocMeasurements)


class Placement(BaseModel):
    """Where a cell ran (the worker's part), and the hardware profile it recorded there."""

    hostname: str | None = None
    node_id: str | None = None
    worker_pid: int | None = None
    hardware_profile_id: str | None = None
    hardware_profile: dict[str, Any] | None = None
    device_mismatch: bool | None = None
    device_mismatch_detail: str | None = None
    gpu_fraction: float | None = None


class CellReport(BaseModel):
    """What an executor delivers for one cell (a trained cell's or a post-hoc cell's)."""

    measured: Measured | PosthocMeasured
    placement: Placement = Field(default_factory=Placement)
    attempts: int = 1
    log: str = ""


class CellResult(Measurements, Placement):
    """One cell's row: the runner's measurements, the worker's placement, the attempts,
    and what follows from them (achieved FLOP/s against the calibrated peak)."""

    cell_id: str
    status: Status
    error: str | None = None
    started_at: str | None = None
    cell_wall_s: float | None = None
    hardware_profile: dict[str, Any] | None = Field(default=None, exclude=True)
    achieved_flops_per_s: float | None = None
    flops_fraction_of_peak: float | None = None
    attempts: int = 1
    log: str = Field(default="", exclude=True)
    log_path: str | None = None

    @classmethod
    def assemble(cls, cell_id: str, report: CellReport, log_path: str | None = None) -> CellResult:
        measured, placement = report.measured, report.placement
        m = measured.measurements
        achieved = peak_fraction = None
        if m.train_flops and m.train_wall_s:
            achieved = m.train_flops / m.train_wall_s
            peak = (placement.hardware_profile or {}).get("matmul_flops")
            peak_fraction = achieved / peak if peak else None
        return cls(
            **m.model_dump(),
            predictions=m.predictions,  # excluded from dumps (the store writes them apart)
            **placement.model_dump(),
            cell_id=cell_id,
            status=measured.status,
            error=measured.error,
            started_at=measured.started_at,
            cell_wall_s=measured.cell_wall_s,
            achieved_flops_per_s=achieved,
            flops_fraction_of_peak=peak_fraction,
            attempts=report.attempts,
            log=report.log,
            log_path=log_path,
        )
