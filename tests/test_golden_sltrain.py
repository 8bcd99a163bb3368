"""SLTrain against numbers its own code produced (andyjm3/SLTrain, SpLoRaLinear and the
sltrain_linear C++ extension; tests/golden/sltrain/generate.py): initial tensors drawn
from one seeded stream (bitwise), forward, all gradients, the dense weight, the count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite.methods.api import PrepareContext
from suite.plugins import load_object
from tests.helpers import catalog
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("sltrain")
C = FIX.config


def _impl():
    entry = catalog().methods.get("sltrain")
    return load_object("impl.py:SLTrainLinear", entry.path.parent), load_object(
        "impl.py:SLTrainParams", entry.path.parent
    )


def _layers():
    cls, params = _impl()
    p = params(r=C["r"], alpha=C["lora_alpha"], delta=C["sp_ratio"])
    gen = torch.Generator().manual_seed(C["seed"])
    return [
        cls(nn.Linear(spec["in"], spec["out"], bias=spec["bias"]), p, gen) for spec in C["layers"]
    ]


def _names(layer) -> list[str]:
    return ["lora_A", "lora_B", "sparse_value", *(["bias"] if layer.bias is not None else [])]


def test_golden_sltrain_initial_tensors_are_the_references_draws():
    for i, layer in enumerate(_layers()):
        for name in [*_names(layer), "sparse_index"]:
            ours, ref = getattr(layer, name).detach(), FIX[f"{i}.init.{name}"]
            assert torch.equal(ours, ref), f"layer {i} {name} differs from the reference's draw"


@pytest.mark.parametrize("i", range(len(C["layers"])))
def test_golden_sltrain_forward_gradients_and_weight(i):
    layer = _layers()[i]
    with torch.no_grad():
        layer.lora_B.copy_(FIX[f"{i}.loaded.lora_B"])
    x = FIX[f"{i}.x"].clone().requires_grad_(True)
    y = layer(x)
    assert_close(y, FIX[f"{i}.y"], f"layer {i} forward")
    y.backward(FIX[f"{i}.upstream"])
    assert_close(x.grad, FIX[f"{i}.grad.x"], f"layer {i} grad x")
    for name in _names(layer):
        assert_close(getattr(layer, name).grad, FIX[f"{i}.grad.{name}"], f"layer {i} grad {name}")
    assert_close(layer.weight_matrix(), FIX[f"{i}.weight"], f"layer {i} dense weight")
    layer.merge()
    assert_close(layer(FIX[f"{i}.x"]), FIX[f"{i}.y"], f"layer {i} merged forward")


def test_golden_sltrain_count_matches_the_references_trainable_tensors():
    counts = [sum(p.numel() for p in layer.parameters()) for layer in _layers()]
    assert counts == FIX.meta["counts"]
    method = catalog().methods.get("sltrain")
    cls = load_object(method.spec.implementation, method.path.parent)
    m = cls(cls.Params(r=C["r"], alpha=C["lora_alpha"], delta=C["sp_ratio"]))
    shapes = [(s["out"], s["in"]) for s in C["layers"]]
    biases = sum(s["out"] for s in C["layers"] if s["bias"])
    assert m.expected_trainable_params(shapes) + biases == sum(FIX.meta["counts"])


def test_sltrain_rejects_a_rank_above_the_layer():
    method = catalog().methods.get("sltrain")
    cls = load_object(method.spec.implementation, method.path.parent)
    from tests.helpers import tiny_bench

    bench = tiny_bench()
    ctx = PrepareContext(preset=bench.preset, seed=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="r = 64 exceeds min"):
        cls(cls.Params(r=64, targets="qv")).prepare(bench.build(0), ctx)
