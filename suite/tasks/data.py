"""From a task spec to clean train/validation/test frames with integer labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from suite.plugins import load_object
from suite.specs.task import TaskBase as TaskSpec
from suite.tasks.loaders import BUILTIN_LOADERS, TaskDataError
from suite.tasks.metrics import compute
from suite.tasks.splits import carve, check_digest
from suite.tasks.types import task_type

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TaskData:
    """Splits with a `label` column (class id, or float for regression) and the label names."""

    splits: dict[str, pd.DataFrame]
    labels: list[str] | None

    @property
    def num_outputs(self) -> int:
        return len(self.labels) if self.labels else 1


def load_task_data(task: TaskSpec, task_dir: Path) -> TaskData:
    raw = _prepared_raw(task, task_dir)
    kind = task_type(task).label_kind
    labels = _label_names(task, raw["train"]) if kind == "class" else None
    splits = {name: _encode_labels(task, frame, labels) for name, frame in raw.items()}
    splits = _carve_splits(task, splits)
    check_digest(task, {s: splits[s] for s in SPLITS})
    if task.max_train_samples:
        splits["train"] = splits["train"].iloc[: task.max_train_samples].reset_index(drop=True)
    return TaskData({s: splits[s] for s in SPLITS}, labels)


def _prepared_raw(task: TaskSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    """The task's splits as loaded, renamed, cleaned and checked, before label encoding."""
    raw = _load_raw(task, task_dir)
    renamed = {name: task.data.splits.get(name, name) for name in raw}
    raw = {renamed[name]: frame for name, frame in raw.items() if renamed[name] != "-"}
    needed = [*task.input_fields, task.label_field]
    for name, frame in raw.items():
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise TaskDataError(f"task '{task.name}' split '{name}' lacks columns {missing}")
        frame = frame.dropna(subset=needed)
        if task.data.drop_duplicates:
            frame = frame.drop_duplicates(subset=task.data.drop_duplicates)
        raw[name] = task.prepare_frame(frame.reset_index(drop=True))
    has_test = "test" in raw or task.data.test is not None
    if "train" not in raw or not has_test:
        raise TaskDataError(
            f"task '{task.name}' needs train and test splits (or data.test to carve one), "
            f"has {sorted(raw)}"
        )
    return raw


def _load_raw(task: TaskSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    loader = BUILTIN_LOADERS.get(task.data.loader)
    if loader is None:
        loader = load_object(task.data.loader, task_dir)
    return dict(loader(task.data, task_dir))


def _label_names(task: TaskSpec, train: pd.DataFrame) -> list[str]:
    if task.labels:
        return list(task.labels)
    counts = train[task.label_field].astype(str).value_counts()
    # Most frequent first, ties broken by name, so the label set is deterministic.
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    names = [name for name, _ in ordered]
    return sorted(names[: task.label_top_k] if task.label_top_k else names)


def _encode_labels(task: TaskSpec, frame: pd.DataFrame, labels: list[str] | None) -> pd.DataFrame:
    frame = frame.copy()
    kind = task_type(task).label_kind
    if kind == "float":
        frame["label"] = frame[task.label_field].astype(float)
        return frame
    if kind == "text":
        frame["label"] = [task.gold_answer(v) for v in frame[task.label_field]]
        return frame
    if kind == "index":
        per_row = frame["choice_labels"] if "choice_labels" in frame else [None] * len(frame)
        frame["label"] = [
            task.choice_index(v, names)
            for v, names in zip(frame[task.label_field], per_row, strict=True)
        ]
        return frame
    index = {name: i for i, name in enumerate(labels)}
    values = frame[task.label_field].astype(str)
    frame = frame[values.isin(index)].reset_index(drop=True)
    frame["label"] = frame[task.label_field].astype(str).map(index).astype(int)
    return frame


def _carve_splits(task: TaskSpec, splits: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Test first (so validation never holds what test took), then validation."""
    if task.data.test is not None:
        if "test" in splits:
            raise TaskDataError(f"task '{task.name}' carves a test split but already has one")
        splits = carve(task, splits, task.data.test, "test")
    if task.data.validation is None:
        if "validation" not in splits:
            raise TaskDataError(
                f"task '{task.name}' has no validation split; add data.validation to carve one"
            )
        return splits
    return carve(task, splits, task.data.validation, "validation")


def baseline_metrics(
    task: TaskSpec, data: TaskData, rows: dict[str, np.ndarray] | None = None
) -> dict[str, dict[str, float]]:
    """Metrics of the trivial predictor (majority class or train mean) on validation and
    test; `rows` scores a split on those positions only (a track's fixed sample)."""
    if task.baseline == "none":
        return {}
    train = data.splits["train"]["label"].to_numpy()
    if task.baseline == "mean" or task_type(task).label_kind == "float":
        constant = float(np.mean(train))
    else:  # the most frequent class, choice index, or answer
        values, counts = np.unique(train.astype(str) if train.dtype == object else train,
                                   return_counts=True)  # fmt: skip
        constant = values[np.argmax(counts)]
    names = [m.name for m in task.metrics]
    out = {}
    for split in ("validation", "test"):
        gold = data.splits[split]["label"].to_numpy()
        if rows and split in rows:
            gold = gold[rows[split]]
        pred = np.empty(len(gold), dtype=object) if gold.dtype == object else None
        if pred is not None:
            pred[:] = [constant] * len(gold)
        out[split] = compute(names, np.full_like(gold, constant) if pred is None else pred, gold)
    return out


def class_names(task: TaskSpec, task_dir: Path) -> list[str] | None:
    """The class names in class-id order (None for a task without classes), as
    `load_task_data` derives them: the task's `labels`, else read from its train split.
    For readers of stored predictions, which keep class ids."""
    if task_type(task).label_kind != "class":
        return None
    if task.labels:
        return list(task.labels)
    return _label_names(task, _prepared_raw(task, task_dir)["train"])
