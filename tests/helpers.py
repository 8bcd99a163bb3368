"""Test helpers: tiny models and benches built from configs (no downloads)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from suite import conformance_bench
from suite.conformance import Bench
from suite.conformance_bench import (  # noqa: F401 - re-exported for tests
    NUM_CLASSES,
    bench_from_backbone,
    random_batches,
    tiny_bert_backbone,
)
from suite.registry import Catalog
from suite.specs.model import ModelPreset


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return Catalog.discover()


def tiny_preset() -> ModelPreset:
    return conformance_bench.tiny_preset(catalog())


def tiny_bench() -> Bench:
    return bench_from_backbone(tiny_bert_backbone(), tiny_preset(), vocab=100)


@lru_cache(maxsize=1)
def minilm_backbone():
    from suite.models.loading import load_backbone

    return load_backbone(catalog().models.get("minilm-l6").spec).eval()


def minilm_bench() -> Bench:
    preset = catalog().models.get("minilm-l6").spec
    return bench_from_backbone(minilm_backbone(), preset, vocab=30522)


def load_script(path: Path) -> ModuleType:
    """A script that is not part of a package (bench/*.py, a golden fixture's generate.py),
    imported from its file under its stem's name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
