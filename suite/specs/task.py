"""Task spec: `tasks/<name>/task.yaml` (may `include:` another task file)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from suite.specs.base import Frozen, Name

TaskType = Literal[
    "classification",
    "pair-classification",
    "regression",
    "multiple-choice",
    "generation",
    "image-classification",
]
# Task types a causal LM answers by scoring or generating text (no classification head).
LM_TASK_TYPES = ("multiple-choice", "generation")
# Which task types each model architecture has a head and an encoding for.
TASK_TYPES_BY_ARCHITECTURE: dict[str, tuple[str, ...]] = {
    "encoder": ("classification", "pair-classification", "regression"),
    "vision": ("image-classification",),
    "causal-lm": LM_TASK_TYPES,
}


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
    # An absolute count instead of a fraction (VTAB-1k's 200 validation images).
    size: PositiveInt | None = None
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
    # Rename the source's splits ({validation: test}); '-' drops one (hidden test labels).
    splits: dict[str, str] = Field(default_factory=dict)
    validation: ValidationCarve | None = None


class TaskSpec(Frozen):
    """A benchmark task: data, input fields, protocol and metrics.

    Per type: classification / pair-classification / regression read one or two
    `text_fields`; multiple-choice joins the `text_fields` into a context and scores each
    choice (`choices_field`: a list column, or `choice_fields`: one column per choice) by
    its log-likelihood under a causal LM, `label_field` holding the correct choice's index;
    generation prompts with the `text_fields` (`prompt_template` may format them) and
    scores the greedy continuation (up to `max_new_tokens`, decoded, cut at the first of
    `stop`, reduced by `prediction_pattern`) by exact match against `label_field` (after
    `answer_pattern`, a regex whose first group is the answer), both with every match of
    `ignore_patterns` removed (see suite/tasks/answers.py);
    image-classification reads `image_field`.
    """

    name: Name
    description: str = ""
    type: TaskType = "classification"
    data: DataSpec
    text_fields: list[str] = Field(default_factory=list, max_length=4)
    label_field: str
    choices_field: str | None = None
    choice_fields: list[str] = Field(default_factory=list)
    image_field: str | None = None
    prompt_template: str | None = None
    # Multiple choice, partial scoring (WinoGrande): each choice replaces this placeholder
    # in the context, and the choice is scored by the log-likelihood of the text after it.
    choice_blank: str | None = None
    answer_pattern: str | None = None
    max_new_tokens: PositiveInt = 16
    # Unset options are None, not their effective defaults: the cell hash leaves None out,
    # so adding an option never changes the ids of cells that do not use it.
    stop: list[str] | None = None  # None: stop at a new line
    prediction_pattern: str | None = None
    ignore_patterns: list[str] | None = None
    labels: list[str] | None = None
    label_top_k: PositiveInt | None = None
    max_length: PositiveInt = 128
    eval_batch_size: PositiveInt = 64
    max_train_samples: PositiveInt | None = None
    metrics: list[MetricSpec] = Field(min_length=1)
    primary_metric: str
    baseline: Literal["majority", "mean", "none"] = "majority"

    @field_validator("answer_pattern", "prediction_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            _compile(pattern)
        return pattern

    @field_validator("ignore_patterns")
    @classmethod
    def _all_compile(cls, patterns: list[str] | None) -> list[str] | None:
        for pattern in patterns or []:
            _compile(pattern)
        return patterns

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stops: list[str] | None) -> list[str] | None:
        if stops is not None and any(s == "" for s in stops):
            raise ValueError("an empty stop string would cut every answer to nothing")
        return stops

    @property
    def stop_strings(self) -> list[str]:
        return ["\n"] if self.stop is None else self.stop

    @model_validator(mode="after")
    def _primary_is_declared(self) -> TaskSpec:
        names = [m.name for m in self.metrics]
        if self.primary_metric not in names:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not among the declared metrics {names}"
            )
        return self

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> TaskSpec:
        if self.type == "image-classification":
            if not self.image_field:
                raise ValueError("an image-classification task needs image_field")
            return self
        if not self.text_fields:
            raise ValueError(f"a {self.type} task needs text_fields")
        if self.type in ("classification", "pair-classification", "regression"):
            if len(self.text_fields) > 2:
                raise ValueError(f"a {self.type} task takes one or two text_fields")
        if self.type == "multiple-choice" and bool(self.choices_field) == bool(self.choice_fields):
            raise ValueError("a multiple-choice task needs choices_field or choice_fields")
        if self.choice_blank is not None and (
            self.type != "multiple-choice" or not self.choice_blank
        ):
            raise ValueError("choice_blank is a non-empty placeholder for multiple-choice tasks")
        return self

    @property
    def input_fields(self) -> list[str]:
        """Every column the task reads besides the label."""
        fields = [*self.text_fields, *self.choice_fields]
        return fields + [f for f in (self.choices_field, self.image_field) if f]

    def metric(self, name: str) -> MetricSpec:
        return next(m for m in self.metrics if m.name == name)


def _compile(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc}): {pattern!r}") from exc
