"""The worker's caches: keys that tell apart what changes an encoding, and a cell's peak
memory that leaves out what the worker held before it."""

from __future__ import annotations

import torch

from suite.specs.model import ImageSpec, ModelSource
from suite.train import caches
from tests.helpers import catalog


def _llama(**update):
    return catalog().models.get("tiny-llama").spec.model_copy(update=update)


def test_presets_sharing_a_source_but_not_a_tokenizer_do_not_share_an_encoding():
    base = _llama()
    other = _llama(tokenizer=ModelSource(hub="gpt2"))
    assert base.source == other.source
    assert caches.tokenizer_key(base) != caches.tokenizer_key(other)


def test_image_processing_is_part_of_the_key():
    vit = catalog().models.get("tiny-vit").spec
    bigger = vit.model_copy(
        update={"image": ImageSpec(size=(vit.image.size if vit.image else 224) * 2)}
    )
    assert caches.tokenizer_key(vit) != caches.tokenizer_key(bigger)


def test_the_key_carries_a_format_version(monkeypatch):
    before = caches.tokenizer_key(_llama())
    monkeypatch.setattr(caches, "ENCODING_FORMAT", caches.ENCODING_FORMAT + 1)
    assert caches.tokenizer_key(_llama()) != before


def test_a_cells_peak_leaves_out_memory_the_worker_already_held(tiny_plugins):
    """A 400 MB tensor resident before the cell (like an earlier cell's cached backbone)
    is not part of the cell's peak; the row reports it in memory_baseline_bytes."""
    from suite.cells import expand
    from suite.registry import Catalog
    from suite.specs.matrix import Budget, MatrixSpec
    from suite.train.runner import run_cell

    cat = Catalog.discover([tiny_plugins])
    matrix = MatrixSpec(
        name="mem", models=["tiny-bert"], methods=["lora"], tasks=["drug-condition"],
        seeds=[0], budget=Budget(max_steps=2, batch_size=8),
    )  # fmt: skip
    (cell,) = expand(matrix, cat)
    held = torch.ones(100 * 2**20)  # 400 MB, resident (touched)
    measured = run_cell(cell)
    assert measured.status == "ok", measured.error
    result = measured.measurements
    assert result.peak_memory_isolated
    assert 0 < result.peak_memory_bytes < 300 * 2**20
    assert result.memory_baseline_bytes > held.numel() * 4
    assert result.cached_model_bytes > 0
    del held
