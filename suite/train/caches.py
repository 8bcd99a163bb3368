"""Per-process caches: a worker loads each model and tokenises each task once.

Every cell gets a fresh deep copy of the cached backbone, never a mutated one. Keys are
spec hashes (specs hold dicts, so they are not hashable themselves).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite.cells import spec_hash
from suite.models import loading
from suite.models.taskmodel import TaskModel
from suite.specs.model import ModelPreset
from suite.specs.task import TaskSpec
from suite.tasks.data import TaskData, baseline_metrics, load_task_data
from suite.train.batches import EncodedSplit, encode

COUNTS = {"model_loads": 0, "tokenizations": 0}
_CACHE: dict[tuple[str, ...], Any] = {}


def _cached(key: tuple[str, ...], build: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def clear() -> None:
    _CACHE.clear()


def task_data(task: TaskSpec, task_dir: str) -> TaskData:
    return _cached(("data", spec_hash(task)), lambda: load_task_data(task, Path(task_dir)))


def baselines(task: TaskSpec, task_dir: str) -> dict:
    return _cached(
        ("baseline", spec_hash(task)), lambda: baseline_metrics(task, task_data(task, task_dir))
    )


def tokenizer(preset: ModelPreset):
    return _cached(("tokenizer", spec_hash(preset)), lambda: loading.load_tokenizer(preset))


def encoded(task: TaskSpec, task_dir: str, preset: ModelPreset) -> dict[str, EncodedSplit]:
    def build():
        COUNTS["tokenizations"] += 1
        tok = tokenizer(preset)
        data = task_data(task, task_dir)
        return {name: encode(task, frame, tok) for name, frame in data.splits.items()}

    return _cached(("encoded", spec_hash(task), spec_hash(preset)), build)


def _backbone(preset: ModelPreset):
    def build():
        COUNTS["model_loads"] += 1
        model = loading.load_backbone(preset)
        model.eval()
        return model

    return _cached(("backbone", spec_hash(preset)), build)


def task_model(preset: ModelPreset, num_outputs: int, seed: int) -> TaskModel:
    """A fresh TaskModel: a copy of the cached backbone, every weight frozen but the head."""
    backbone = copy.deepcopy(_backbone(preset))
    for p in backbone.parameters():
        p.requires_grad_(False)
    return TaskModel(backbone, num_outputs, preset.pooling, seed)
