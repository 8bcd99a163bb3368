"""LoLDU against SKDDJ/LoLDU's own code (tests/golden/loldu)."""

from __future__ import annotations

import torch

from suite.plugins import load_object
from tests.support.golden import GOLDEN_DIR, assert_close, load_fixture

FIX = load_fixture("loldu")
IMPL = GOLDEN_DIR.parent.parent / "methods" / "loldu"
LoLDU = load_object("impl.py:LoLDU", IMPL)
LoLDULinear = load_object("impl.py:LoLDULinear", IMPL)
LoLDUParams = load_object("impl.py:LoLDUParams", IMPL)


def ours(**params) -> torch.nn.Module:
    c = FIX.config
    base = torch.nn.Linear(c["d_in"], c["d_out"])
    with torch.no_grad():
        base.weight.copy_(FIX["W0"])
        base.bias.copy_(FIX["b0"])
    return LoLDULinear(base, LoLDUParams(r=c["r"], alpha=c["alpha"], **params))


def test_golden_loldu_decomposition_and_residual():
    layer = ours()
    permutation = torch.eye(FIX.config["d_out"])[layer.perm]  # (P @ M) == M[perm]
    assert_close(permutation, FIX["P"], "P", tol=0.0)
    assert_close(layer.lower, FIX["L_r"], "L_r")
    assert_close(layer.vector_z, FIX["D_r"], "z = D_r")
    assert_close(layer.upper, FIX["U_r"], "U_r")
    assert_close(layer.scaling_factor.reshape(1), FIX["scaling_factor"], "scale alpha / r")
    assert_close(layer.base.weight, FIX["W_res"], "W_res")
    assert_close(layer.merged_weight(), FIX["weight_at_init"], "weight at init")


def test_golden_loldu_trains_what_the_official_optimiser_trains():
    """get_loldu_params hands the optimiser vector_z only (r per layer), not the scale."""
    layer = ours()
    trainable = {n: p.numel() for n, p in layer.named_parameters() if p.requires_grad}
    (official,) = FIX.meta["optimised"].items()
    assert trainable == {"vector_z": official[1]}
    method = LoLDU(LoLDUParams())
    assert method.expected_trainable_params([(16, 24), (8, 8)]) == 8 + 8
    # The labelled option trains the scale too.
    assert ours(train_scale=True).scaling_factor.requires_grad


def test_golden_loldu_forward_gradients_delta():
    for train_scale in (False, True):
        layer = ours(train_scale=train_scale)
        with torch.no_grad():
            layer.vector_z.copy_(FIX["z"])
        out = layer(FIX["x"])
        assert_close(out, FIX["out"], "forward")
        out.backward(FIX["upstream"])
        assert_close(layer.vector_z.grad, FIX["grad_z"], "grad z")
        if train_scale:
            assert_close(layer.scaling_factor.grad.reshape(1), FIX["grad_scale"], "grad scale")
        assert_close(layer.merged_weight() - FIX["W0"], FIX["delta"], "delta weight")
