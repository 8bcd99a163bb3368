"""SNELL against its authors' code (ssfgunner/SNELL model/vision_transformer_timm.py,
classes SNELL and KLoRA; fixture in tests/golden/snell/).

With the reference's factors loaded: the kernel, the competition survivors, the branch
output, the factor gradients, the delta weight and the count, at sparsity 0.5 (SNELL)
and 0 (KLoRA); and the init distribution of the factors.
"""

from __future__ import annotations

import math

import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, tiny_preset
from tests.support.golden import OneLinearToy, assert_close, frozen_toy, load_fixture

FX = load_fixture("snell")
CFG = FX.config


def snell_layer(sparsity: float):
    params = {"q": CFG["q"], "kernels": CFG["kernels"], "sparsity": sparsity, "targets": ["a"]}
    method = C.instantiate(resolve_method(catalog(), MethodEntry(method="snell", params=params)))
    model = frozen_toy(OneLinearToy(CFG["d_in"], CFG["d_out"]))
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    method.prepare(model, ctx)
    return model.backbone.a


def test_golden_snell_init_distributions():
    layer = snell_layer(0.5)
    width = CFG["q"] // CFG["kernels"]
    for ours, ref, fan in (
        (layer.in_qs, FX["init.In_Qs"], CFG["d_in"] * width),
        (layer.out_qs, FX["init.Out_Qs"], CFG["d_out"] * width),
    ):
        assert ours.shape == ref.shape
        bound = 1 / math.sqrt(fan)  # kaiming_uniform(a=sqrt 5) on (H, d, q/H)
        for t in (ours.detach(), ref):
            assert float(t.abs().max()) <= bound
            # U(-b, b): std b / sqrt 3; ~100-200 draws, so within 25%.
            assert abs(float(t.std()) - bound / math.sqrt(3)) < 0.25 * bound / math.sqrt(3)


@pytest.mark.parametrize("sparsity", CFG["sparsities"])
def test_golden_snell_kernel_survivors_forward_gradients_delta(sparsity):
    tag = f"s{sparsity}"
    layer = snell_layer(sparsity)
    with torch.no_grad():
        layer.in_qs.copy_(FX["loaded.In_Qs"])
        layer.out_qs.copy_(FX["loaded.Out_Qs"])
    assert_close(layer.kernel(), FX[f"{tag}.kernel"], "kernel")
    delta = layer.delta_weight()
    if sparsity > 0:
        survivors = FX[f"{tag}.sparse_kernel"] != 0
        assert torch.equal(delta.T.detach() != 0, survivors), "competition survivors differ"
        assert_close(delta.T, FX[f"{tag}.sparse_kernel"], "sparsified kernel")
    assert_close(delta, FX[f"{tag}.delta_weight"], "delta weight")
    y = layer.update(FX["x"])
    assert_close(y, FX[f"{tag}.update"], "branch output")
    (y * FX["upstream"]).sum().backward()
    assert_close(layer.in_qs.grad, FX[f"{tag}.grad.In_Qs"], "grad In_Qs")
    assert_close(layer.out_qs.grad, FX[f"{tag}.grad.Out_Qs"], "grad Out_Qs")
    trainable = sum(p.numel() for p in (layer.in_qs, layer.out_qs))
    assert trainable == FX.meta["trainable_params"][tag]
