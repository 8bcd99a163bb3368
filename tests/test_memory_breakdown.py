"""Training memory broken down per cell (suite/train/memory.py): exact tensor bytes of
weights, gradients and optimiser state, derived here by hand for LoRA and full
fine-tuning of the tiny BERT, and parts that fit inside the measured peak."""

from __future__ import annotations

import pytest

# tiny-bert (suite/conformance_bench.py): hidden 32, 2 layers, 4 heads, intermediate 64,
# 128 positions, 2 token types, MiniLM's 30,522-token vocabulary; fp32. Saved without a
# pooler, the loader adds a fresh one (32 x 32 + 32) that mean pooling never uses, so
# it never gets a gradient.
H, LAYERS, FF, POS, VOCAB, CLASSES = 32, 2, 64, 128, 30522, 10
HEAD = H * CLASSES + CLASSES
PER_LAYER = 4 * (H * H + H) + 2 * H + (H * FF + FF) + (FF * H + H) + 2 * H
POOLER = H * H + H
ALL = VOCAB * H + POS * H + 2 * H + 2 * H + LAYERS * PER_LAYER + POOLER + HEAD
# Tensors: 3 embeddings + LayerNorm (2); per layer 8 attention, 2 + 2 + 2 + 2 others;
# pooler 2; head 2.
ALL_TENSORS = 5 + LAYERS * 16 + 2 + 2
# AdamW keeps exp_avg and exp_avg_sq per parameter and a float32 step per tensor.
STEP_BYTES = 4
# Buffers that never train: BertEmbeddings' position_ids and token_type_ids (int64, 128).
BUFFERS = 2 * POS * 8


def _run(tiny_plugins, method: str, **params):
    from suite.cells import expand
    from suite.registry import Catalog
    from suite.specs.matrix import Budget, MatrixSpec
    from suite.train.runner import run_cell

    cat = Catalog.discover([tiny_plugins])
    entry = {"method": method, "params": params} if params else method
    matrix = MatrixSpec(
        name="mem", models=["tiny-bert"], methods=[entry], tasks=["drug-condition"],
        seeds=[0], budget=Budget(max_steps=2, batch_size=8),
    )  # fmt: skip
    (cell,) = expand(matrix, cat)
    measured = run_cell(cell)
    assert measured.status == "ok", measured.error
    return measured.measurements


def _parts(m) -> int:
    return (
        m.mem_frozen_weights_bytes
        + m.mem_trainable_weights_bytes
        + m.mem_gradients_bytes
        + m.optimizer_state_bytes
    )


def test_lora_parts_equal_their_tensor_sizes(tiny_plugins):
    m = _run(tiny_plugins, "lora", r=8, targets="qv")
    # A (8 x 32) and B (32 x 8) on query and value of both layers, and the head.
    trainable = LAYERS * 2 * 8 * (H + H) + HEAD
    assert m.trainable_params == trainable
    assert m.mem_trainable_weights_bytes == 4 * trainable
    assert m.mem_gradients_bytes == 4 * trainable
    tensors = LAYERS * 2 * 2 + 2
    assert m.optimizer_state_bytes == 2 * 4 * trainable + STEP_BYTES * tensors
    assert m.mem_frozen_weights_bytes == 4 * (ALL - HEAD) + BUFFERS
    assert m.base_bytes == 4 * (ALL - HEAD) + BUFFERS
    assert _parts(m) <= m.peak_memory_bytes
    assert m.mem_activations_other_bytes == m.peak_memory_bytes - _parts(m)


def test_full_fine_tuning_parts_equal_their_tensor_sizes(tiny_plugins):
    m = _run(tiny_plugins, "full")
    assert m.trainable_params == ALL
    assert m.mem_trainable_weights_bytes == 4 * ALL
    assert m.mem_gradients_bytes == 4 * (ALL - POOLER)
    # AdamW keeps no state for a parameter that never had a gradient (the pooler).
    assert m.optimizer_state_bytes == 2 * 4 * (ALL - POOLER) + STEP_BYTES * (ALL_TENSORS - 2)
    assert m.mem_frozen_weights_bytes == BUFFERS
    assert _parts(m) <= m.peak_memory_bytes


@pytest.mark.parametrize("method", ["qlora"])
def test_parts_fit_the_peak_on_a_compressed_base(tiny_plugins, method):
    m = _run(tiny_plugins, method)
    assert m.base_storage == "nf4"
    assert m.mem_frozen_weights_bytes < 4 * (ALL - HEAD) / 6  # 4-bit against fp32
    assert _parts(m) <= m.peak_memory_bytes
