"""The typed result of one cell, as the runner returns it and the store writes it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["ok", "failed", "nan", "oom", "timeout", "crashed"]


class CellResult(BaseModel):
    """Everything a cell measured. Costs are None where they could not be measured."""

    cell_id: str
    status: Status
    error: str | None = None
    val_metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)
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
    base_dtype: str | None = None
    adapter_dtype: str | None = None
    method_source_hash: str | None = None
    final_train_loss: float | None = None
    loss_curve: list[float] = Field(default_factory=list)
    cell_wall_s: float | None = None
    device: str | None = None
    hostname: str | None = None
    node_id: str | None = None
    worker_pid: int | None = None
    started_at: str | None = None
    # Scheduling and hardware (suite/scheduler/): the recorded profile this cell ran on,
    # how much of its calibrated matmul peak training achieved, and how it was placed.
    hardware_profile_id: str | None = None
    hardware_profile: dict | None = Field(default=None, exclude=True)
    device_mismatch: bool | None = None
    device_mismatch_detail: str | None = None
    train_tokens: int | None = None
    train_flops: float | None = None
    achieved_flops_per_s: float | None = None
    flops_fraction_of_peak: float | None = None
    gpu_fraction: float | None = None
    attempts: int = 1
    log: str = Field(default="", exclude=True)
    log_path: str | None = None
    # Forgetting (suite/tasks/forgetting.py): loss on the matrix's reference texts.
    reference_loss_before: float | None = None
    reference_loss_after: float | None = None
    forgetting_delta_loss: float | None = None
