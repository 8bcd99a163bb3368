"""Task specs: `tasks/<name>/task.yaml` (may `include:` another task file).

The fields every task has; each task type's own fields and pipeline are one entry of
`suite.tasks.types`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from suite.specs.base import Frozen, Name


class MetricSpec(Frozen):
    """A metric the task reports; its version is part of the cell hash."""

    name: str
    higher_is_better: bool = True
    version: int = 1
    display: str | None = None
    unit: str | None = None


class SplitCarve(Frozen):
    """Carve a split (validation, or test) out of another split with a fixed seed."""

    from_split: str = "train"
    fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    # An absolute count instead of a fraction (VTAB-1k's 200 validation images).
    size: PositiveInt | None = None
    seed: int = 0
    stratify: bool = True
    # Hold out whole groups (rows sharing this column's value: a movie's reviews), so no
    # group is in two splits; `fraction` is then the share of groups, and the carve does
    # not stratify (a group's rows move together, whatever their labels).
    group_by: str | None = None
    # With group_by: take `fraction` of the groups within each value of this column (every
    # group must have one value: a page's section), so each split keeps the strata's mix
    # of groups. None (unset) keeps the plain group carve and older tasks' splits.
    stratify_groups_by: str | None = None

    @model_validator(mode="after")
    def _groups_take_a_fraction(self) -> SplitCarve:
        if self.group_by is not None and self.size is not None:
            raise ValueError("a carve with group_by takes a fraction of the groups, not a size")
        if self.stratify_groups_by is not None and self.group_by is None:
            raise ValueError("stratify_groups_by stratifies a group carve: set group_by too")
        return self


# The name tasks were written against when only validation could be carved.
ValidationCarve = SplitCarve


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
    # Rows repeating an earlier row's values in these columns are dropped (within each
    # loaded split, before carving), so a snippet filed twice cannot sit on both sides.
    drop_duplicates: list[str] | None = None
    # Carved after loading: test first (from a source that ships one table), then validation.
    test: SplitCarve | None = None
    validation: SplitCarve | None = None
    # SHA-256 of the final splits' contents (suite.tasks.splits.split_digest): loading
    # fails if the package's data or the carve changed, instead of silently moving them.
    split_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class TaskBase(Frozen):
    """What every task has, whatever its type: data, label column, protocol and metrics.

    Each task type adds its own fields in a subclass (suite/tasks/types.py), and
    `TaskSpec` is their union, told apart by `type`. Three fields live here although only
    some types read them (`text_fields`, `choice_fields`, `max_new_tokens`): cell ids hash
    a task's dumped fields, and these three were always dumped, so keeping them on every
    task keeps the ids of stored cells. A type that does not read one refuses it if set.
    """

    name: Name
    description: str = ""
    data: DataSpec
    label_field: str
    text_fields: list[str] = Field(default_factory=list, max_length=4)
    choice_fields: list[str] = Field(default_factory=list)
    max_new_tokens: PositiveInt = 16
    max_length: PositiveInt = 128
    eval_batch_size: PositiveInt = 64
    max_train_samples: PositiveInt | None = None
    metrics: list[MetricSpec] = Field(min_length=1)
    primary_metric: str
    baseline: Literal["majority", "mean", "none"] = "majority"

    # Fields of the base that this type reads (the others are refused if given).
    uses: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _primary_is_declared(self) -> TaskBase:
        names = [m.name for m in self.metrics]
        if self.primary_metric not in names:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} is not among the declared metrics {names}"
            )
        return self

    @model_validator(mode="after")
    def _only_fields_of_this_type(self) -> TaskBase:
        unused = sorted(({"text_fields", "choice_fields", "max_new_tokens"} - self.uses)
                        & self.model_fields_set)  # fmt: skip
        if unused:
            kind = self.type  # type: ignore[attr-defined]
            raise ValueError(f"{kind} tasks do not take {', '.join(unused)}")
        return self

    @property
    def input_fields(self) -> list[str]:
        """Every column the task reads besides the label."""
        return [*self.text_fields, *self.choice_fields]

    def prepare_frame(self, frame):
        """A split's frame as the type's encoder reads it (multiple choice builds its
        `choices` column); most types take it as loaded."""
        return frame

    def metric(self, name: str) -> MetricSpec:
        return next(m for m in self.metrics if m.name == name)


def compile_pattern(pattern: str | None) -> str | None:
    """A field validator's check that a regular expression compiles."""
    if pattern is not None:
        _compile(pattern)
    return pattern


def _compile(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc}): {pattern!r}") from exc
