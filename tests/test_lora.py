"""LoRA's math: identity at init, merge equivalence, exact parameter counts, scaling, PiSSA."""

from __future__ import annotations

import math

import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, minilm_bench, tiny_bench


def lora(**params):
    method = resolve_method(catalog(), MethodEntry(method="lora", params=params))
    return C.instantiate(method)


def test_minilm_count_r8_query_value_is_73728_plus_head():
    prepared = C.prepare(lora(r=8, targets="qv"), minilm_bench())
    assert C.adapter_param_count(prepared) == 6 * 2 * 8 * (384 + 384) == 73_728
    head = sum(p.numel() for p in prepared.model.head.parameters())
    trainable = sum(p.numel() for p in prepared.model.parameters() if p.requires_grad)
    assert trainable == 73_728 + head


def test_identity_at_init_and_merge_within_1e5():
    bench = tiny_bench()
    assert C.check_identity(lora(r=4), bench) == 0.0
    assert C.check_merge(C.prepare(lora(r=4, targets="attention"), bench), bench) < 1e-5


def test_a_is_kaiming_uniform_and_b_zero():
    prepared = C.prepare(lora(r=8), minilm_bench())
    layer = prepared.model.backbone.encoder.layer[0].attention.self.query
    bound = 1 / math.sqrt(384)  # kaiming_uniform(a=sqrt 5) on fan_in 384
    assert layer.lora_A.weight.abs().max() <= bound
    assert layer.lora_A.weight.std() > 0.5 * bound / math.sqrt(3)
    assert torch.count_nonzero(layer.lora_B.weight) == 0


@pytest.mark.parametrize("rslora,expected", [(False, 16 / 4), (True, 16 / 2)])
def test_scaling(rslora, expected):
    prepared = C.prepare(lora(r=4, alpha=16, rslora=rslora), tiny_bench())
    layer = prepared.model.backbone.encoder.layer[0].attention.self.query
    assert layer.scaling == expected


def test_pissa_keeps_the_model_and_puts_top_singular_directions_in_the_adapter():
    bench = tiny_bench()
    assert C.check_identity(lora(r=4, init="pissa"), bench) < 1e-5
    prepared = C.prepare(lora(r=4, init="pissa"), bench)
    layer = prepared.model.backbone.encoder.layer[0].attention.self.query
    base = bench.build(0).backbone.encoder.layer[0].attention.self.query.weight
    top = torch.linalg.svdvals(base)[:4]
    adapter = torch.linalg.svdvals(layer.delta_weight())[:4]
    assert torch.allclose(adapter, top, rtol=1e-4)


def test_dropout_only_in_training():
    prepared = C.prepare(lora(r=4, dropout=0.5), tiny_bench())
    C.perturb(prepared.model)  # B leaves zero, so the adapter's path shows in the output
    batch = tiny_bench().batches[0]
    prepared.model.eval()
    a, b = prepared.model(**batch), prepared.model(**batch)
    assert torch.equal(a, b)  # eval: no dropout, deterministic
    prepared.model.train()
    torch.manual_seed(0)
    c = prepared.model(**batch)
    torch.manual_seed(1)
    d = prepared.model(**batch)
    assert not torch.equal(c, d)  # training: dropout on the adapter's input
    assert not torch.equal(c, a)
    # Only the adapter's input is dropped: with the update removed, train == eval.
    layer = prepared.model.backbone.encoder.layer[0].attention.self.query
    with torch.no_grad():
        x = torch.randn(3, layer.in_features)
        layer.lora_B.weight.zero_()
        assert torch.equal(layer(x), layer.base(x))
