"""Task spec: `tasks/<name>/task.yaml` (may `include:` another task file)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from suite.specs.base import Frozen, Name

TaskType = Literal["classification", "pair-classification", "regression"]


class MetricSpec(Frozen):
    """A metric the task reports; its version is part of the cell hash."""

    name: str
    higher_is_better: bool = True
    version: int = 1
    display: str | None = None
    unit: str | None = None


class ValidationCarve(Frozen):
    """Carve the validation split out of another split with a fixed seed."""

    from_split: str = "train"
    fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    seed: int = 0
    stratify: bool = True


class DataSpec(Frozen):
    """Where the examples come from.

    `loader` is `hub` (datasets.load_dataset of `path`/`config`), `files` (local
    CSV/TSV/JSON/Parquet named in `data_files`), or a plugin `module:attr` /
    `file.py:attr` next to the task YAML that returns the raw splits.
    """

    loader: str = "files"
    path: str | None = None
    config: str | None = None
    revision: str | None = None
    data_files: dict[str, str | list[str]] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    splits: dict[str, str] = Field(default_factory=dict)
    validation: ValidationCarve | None = None


class TaskSpec(Frozen):
    """A benchmark task: data, input fields, protocol and metrics."""

    name: Name
    description: str = ""
    type: TaskType = "classification"
    data: DataSpec
    text_fields: list[str] = Field(min_length=1, max_length=2)
    label_field: str
    labels: list[str] | None = None
    label_top_k: PositiveInt | None = None
    max_length: PositiveInt = 128
    eval_batch_size: PositiveInt = 64
    max_train_samples: PositiveInt | None = None
    metrics: list[MetricSpec] = Field(min_length=1)
    primary_metric: str
    baseline: Literal["majority", "mean", "none"] = "majority"

    @model_validator(mode="after")
    def _primary_is_declared(self) -> TaskSpec:
        names = [m.name for m in self.metrics]
        if self.primary_metric not in names:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not among the declared metrics {names}"
            )
        return self

    def metric(self, name: str) -> MetricSpec:
        return next(m for m in self.metrics if m.name == name)
