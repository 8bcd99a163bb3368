"""Per-process caches: a worker loads each model and tokenises each task once.

Every cell gets a fresh deep copy of the cached backbone, never a mutated one. Keys are
spec hashes (specs hold dicts, so they are not hashable themselves); a caller that has a
spec's hash passes it as `key` (the load phase hashes a cell's task and model once).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite.hashing import spec_hash
from suite.models import loading
from suite.models.taskmodel import TaskModel
from suite.specs.model import ModelPreset
from suite.specs.task import TaskBase as TaskSpec
from suite.tasks.data import TaskData, baseline_metrics, load_task_data
from suite.tasks.encoding import EncodedSplit
from suite.tasks.types import task_type

COUNTS = {"model_loads": 0, "tokenizations": 0, "tokenized_loads": 0}
# The disk cache of tokenised datasets; the driver points workers at results/cache.
_DISK: dict[str, Path | None] = {"dir": None}
_CACHE: dict[tuple[str, ...], Any] = {}


def _cached(key: tuple[str, ...], build: Callable[[], Any]) -> Any:
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def clear() -> None:
    _CACHE.clear()


def task_data(task: TaskSpec, task_dir: str, key: str | None = None) -> TaskData:
    key = key or spec_hash(task)
    return _cached(("data", key), lambda: load_task_data(task, Path(task_dir)))


def baselines(task: TaskSpec, task_dir: str, key: str | None = None) -> dict:
    key = key or spec_hash(task)
    return _cached(
        ("baseline", key), lambda: baseline_metrics(task, task_data(task, task_dir, key))
    )


def tokenizer(preset: ModelPreset, key: str | None = None):
    key = key or spec_hash(preset)
    return _cached(("tokenizer", key), lambda: loading.load_tokenizer(preset))


def set_disk_dir(path: Path | str | None) -> None:
    """Where tokenised datasets are kept across processes (None: memory only)."""
    _DISK["dir"] = Path(path) if path else None


def disk_dir() -> Path | None:
    """The folder set_disk_dir set (a federated round hands it to its client tasks)."""
    return _DISK["dir"]


# Bumped whenever the pickled EncodedSplit changes shape, so no worker reads an older one.
ENCODING_FORMAT = 4


def tokenizer_key(preset: ModelPreset) -> str:
    """What decides how a preset turns examples into inputs: where its tokenizer comes
    from (its own `tokenizer:` source, else the weights' source) and, for vision presets,
    its image processing. Presets that share all of these share a tokenised cache."""
    parts = {
        "source": preset.source.model_dump(mode="json"),
        "tokenizer": preset.tokenizer.model_dump(mode="json") if preset.tokenizer else None,
        "image": preset.image.model_dump(mode="json") if preset.image else None,
        "format": ENCODING_FORMAT,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def encoded(
    task: TaskSpec, task_dir: str, preset: ModelPreset, keys: tuple[str, str] | None = None
) -> dict[str, EncodedSplit]:
    """Tokenised splits, from memory, else from the disk cache, else tokenised (once);
    `keys`: the task's and the preset's spec hashes, where the caller has them."""
    task_key, model_key = keys or (spec_hash(task), None)

    def tokenize():
        COUNTS["tokenizations"] += 1
        tok = tokenizer(preset, model_key)
        data = task_data(task, task_dir, task_key)
        encode = task_type(task).function("encoder")
        return {name: encode(task, frame, tok) for name, frame in data.splits.items()}

    name = f"tokenized-{task_key}-{tokenizer_key(preset)}"
    return _cached(("encoded", name), lambda: _on_disk(name, tokenize))


def _on_disk(name: str, build: Callable[[], Any]) -> Any:
    """Load `name` from the disk cache, or build and store it; a file lock makes concurrent
    workers wait for the first one instead of tokenising the same data again."""
    folder = _DISK["dir"]
    if folder is None:
        return build()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pkl"
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            COUNTS["tokenized_loads"] += 1
            with open(path, "rb") as f:
                return pickle.load(f)
        value = build()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return value


def _backbone(preset: ModelPreset, key: str):
    def build():
        COUNTS["model_loads"] += 1
        model = loading.load_backbone(preset)
        model.eval()
        return model

    return _cached(("backbone", key), build)


def _stored_backbone(preset: ModelPreset, storage: str | None, key: str | None):
    """The backbone stored as `storage` (compressed once per worker, then cached like the
    loaded model); None: the backbone as loaded."""
    key = key or spec_hash(preset)
    if storage is None:
        return _backbone(preset, key)

    def build():
        from suite.models.storage import apply_storage

        COUNTS["base_compressions"] = COUNTS.get("base_compressions", 0) + 1
        return apply_storage(copy.deepcopy(_backbone(preset, key)), storage)

    return _cached(("backbone", key, storage), build)


def cached_model_bytes() -> int:
    """Bytes (as stored) of every backbone this worker keeps cached (reported beside a
    cell's peak, which does not include them)."""
    from suite.models.storage import module_bytes

    return sum(module_bytes(model) for key, model in _CACHE.items() if key[0] == "backbone")


def warm(preset: ModelPreset, storage: str | None = None, key: str | None = None) -> None:
    """Load the preset's backbone (and its stored form) into the cache now (outside any
    seeded section)."""
    _stored_backbone(preset, storage, key)


def task_model(
    preset: ModelPreset,
    num_outputs: int,
    seed: int,
    storage: str | None = None,
    key: str | None = None,
) -> TaskModel:
    """A fresh TaskModel: a copy of the cached (stored) backbone, every weight frozen but
    the head."""
    backbone = copy.deepcopy(_stored_backbone(preset, storage, key))
    for p in backbone.parameters():
        p.requires_grad_(False)
    return TaskModel(backbone, num_outputs, preset.pooling, seed)
