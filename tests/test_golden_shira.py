"""SHiRA against Hugging Face PEFT's own implementation (tuners/shira), live.

PEFT is installed in the project's environment, so the reference runs in the test: the
same tiny BERT gets PEFT's SHiRA (ShiraConfig(r, random_seed=seed), the random mask) and
peftbench's, and the two are compared on masks (PEFT draws each layer's mask from a
generator re-seeded with random_seed, so same-shape layers share one mask), the
trainable count, the forward output and the gradients with the same values loaded, and
the merged delta weight.
"""

from __future__ import annotations

import copy
from importlib.metadata import version

import torch
from peft import ShiraConfig, get_peft_model

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.sparse import sparse_adapters
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, tiny_bench
from tests.support.golden import assert_close

R, SEED = 4, 3
PEFT_TARGETS = ["query", "value"]  # peftbench's "qv" on BERT


def ours():
    bench = tiny_bench()
    entry = MethodEntry(method="shira", params={"r": R, "targets": "qv"})
    prepared = C.prepare(C.instantiate(resolve_method(catalog(), entry)), bench, seed=SEED)
    return bench, prepared, dict(sparse_adapters(prepared.model.backbone))


def peft_reference(bench):
    backbone = copy.deepcopy(bench.build(SEED).backbone)
    config = ShiraConfig(r=R, target_modules=PEFT_TARGETS, random_seed=SEED)
    model = get_peft_model(backbone, config)
    layers = {
        name.removeprefix("base_model.model."): m
        for name, m in model.named_modules()
        if hasattr(m, "shira_indices") and "default" in m.shira_indices
    }
    return model, layers


def flat_indices(layer) -> torch.Tensor:
    rows, cols = layer.shira_indices["default"].long()
    return rows * layer.in_features + cols


def test_golden_shira_masks_and_count_match_peft():
    assert version("peft") == "0.21.2"
    bench, prepared, layers = ours()
    _, ref = peft_reference(bench)
    assert set(layers) == set(ref)
    for name, layer in layers.items():
        assert torch.equal(layer.indices.long(), flat_indices(ref[name])), name
    # PEFT re-seeds per layer: same-shape layers carry the same mask.
    masks = {tuple(layer.indices.tolist()) for layer in layers.values()}
    assert len(masks) == 1
    ref_count = sum(p.numel() for n, p in ref[next(iter(ref))].named_parameters() if "shira" in n)
    assert ref_count == R * (32 + 32)
    assert C.adapter_param_count(prepared) == ref_count * len(ref)


def test_golden_shira_forward_gradients_and_delta_match_peft():
    bench, prepared, layers = ours()
    ref_model, ref = peft_reference(bench)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, layer in layers.items():
            values = torch.randn(layer.k, generator=gen) * 0.1
            layer.values.copy_(values)
            ref[name].shira_weight["default"].copy_(values)
    batch = bench.batches[0]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    ours_out = prepared.model.backbone(**inputs).last_hidden_state
    ref_out = ref_model(**inputs).last_hidden_state
    assert_close(ours_out, ref_out, "backbone output")
    upstream = torch.randn(ref_out.shape, generator=gen)
    (ours_out * upstream).sum().backward()
    (ref_out * upstream).sum().backward()
    for name, layer in layers.items():
        assert_close(layer.values.grad, ref[name].shira_weight["default"].grad, f"{name} grad")
        assert_close(
            layer.delta_weight(), ref[name].get_delta_weight("default").to_dense(), f"{name} delta"
        )
