"""LoRAM: adapter recovery against the reference script's own output, and pruning /
training / recovery on the tiny BERT (shapes, bytes, the full model scored)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from suite import conformance as C
from suite.plugins import load_object
from tests.helpers import tiny_bench
from tests.support.golden import load_fixture

IMPL = str(Path(__file__).resolve().parent.parent / "methods" / "loram")


def _impl():
    return sys.modules[load_object("impl.py:LoRAM", IMPL).__module__]


def test_golden_loram_recovery_matches_the_reference_script():
    fx = load_fixture("loram")
    cfg, impl = fx.config, _impl()
    mlp, kv = fx["mlp_idx"], fx["kv_idx"]
    q = impl.query_channels(kv, cfg["head_dim"], cfg["heads"] // cfg["kv_heads"])
    inter, q_full, kv_full = cfg["intermediate"], cfg["heads"] * cfg["head_dim"], 1024
    ours = {
        "mlp.down_proj.lora_A.weight": impl.recover_columns(fx["in.mlp.down_proj.lora_A.weight"], mlp, inter),
        "mlp.gate_proj.lora_B.weight": impl.recover_rows(fx["in.mlp.gate_proj.lora_B.weight"], mlp, inter),
        "mlp.up_proj.lora_B.weight": impl.recover_rows(fx["in.mlp.up_proj.lora_B.weight"], mlp, inter),
        "self_attn.o_proj.lora_A.weight": impl.recover_columns(fx["in.self_attn.o_proj.lora_A.weight"], q, q_full),
        "self_attn.q_proj.lora_B.weight": impl.recover_rows(fx["in.self_attn.q_proj.lora_B.weight"], q, q_full),
        "self_attn.k_proj.lora_B.weight": impl.recover_rows(fx["in.self_attn.k_proj.lora_B.weight"], kv, kv_full),
        "self_attn.v_proj.lora_B.weight": impl.recover_rows(fx["in.self_attn.v_proj.lora_B.weight"], kv, kv_full),
    }  # fmt: skip
    for name, tensor in ours.items():
        assert torch.equal(tensor, fx[f"out.{name}"]), name


def _loram(**params):
    cls = load_object("impl.py:LoRAM", IMPL)
    return cls(cls.Params(**{"targets": "attention", "calibration_batches": 2, **params}))


def test_structured_loram_trains_small_and_infers_on_the_full_model():
    bench = tiny_bench()
    method = _loram(pruning="structured", ratio=0.5)
    prepared = C.prepare(method, bench)
    model = prepared.model
    layer = model.backbone.encoder.layer[0]
    # 4 heads of 8 -> 2 kept; intermediate 64 -> 32 neurons.
    assert layer.attention.self.query.base.weight.shape == (16, 32)
    assert layer.attention.output.dense.base.weight.shape == (32, 16)
    assert layer.intermediate.dense.weight.shape == (32, 32)
    assert layer.output.dense.weight.shape == (32, 32)
    trained = prepared.trainable_count()
    # LoRA r 8 on the pruned q, k, v (32 -> 16) and o (16 -> 32) of two layers.
    assert trained == 2 * 4 * 8 * (32 + 16)
    assert prepared.inference_base_bytes() > 1.0  # the full base's bytes, taken before pruning
    q = layer.attention.self.query
    with torch.no_grad():
        q.lora_B.weight.normal_()
    pruned_b = q.lora_B.weight.detach().clone()
    prepared.hooks.on_train_end()
    q = model.backbone.encoder.layer[0].attention.self.query
    assert q.base.weight.shape == (32, 32) and q.lora_B.weight.shape == (32, 8)
    zero_rows = (q.lora_B.weight == 0).all(dim=1)
    assert int(zero_rows.sum()) == 16  # the pruned heads' rows are zero (zeroA / zero B)
    assert torch.equal(q.lora_B.weight[~zero_rows], pruned_b)
    out = model(**bench.batches[0])
    assert torch.isfinite(out).all() and prepared.trainable_count() == trained


def test_unstructured_loram_stores_a_sparse_training_base():
    impl, bench = _impl(), tiny_bench()
    prepared = C.prepare(_loram(pruning="unstructured", ratio=0.75), bench)
    base = prepared.model.backbone.encoder.layer[0].intermediate.dense
    assert isinstance(base, impl.SparseLinear)
    assert base.sparse_weight.values().numel() == 32 * 64 // 4
    assert C.check_merge(prepared, bench) < C.MERGE_TOL
    prepared.hooks.on_train_end()
    full = prepared.model.backbone.encoder.layer[0].intermediate.dense
    assert type(full) is torch.nn.Linear and (full.weight != 0).all()


def test_loram_refuses_a_family_it_cannot_prune():
    bench = tiny_bench()
    bad = bench.preset.model_copy(update={"family": "vit"})
    with pytest.raises(ValueError, match="loram prunes \\['bert', 'llama'\\] layers, not 'vit'"):
        C.prepare(_loram(), bench.__class__(preset=bad, build=bench.build, batches=bench.batches))
