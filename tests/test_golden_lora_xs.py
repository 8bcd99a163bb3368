"""LoRA-XS against MohammadrezaBanaei/LoRA-XS's own code (tests/golden/lora-xs)."""

from __future__ import annotations

import pytest
import torch

from suite.plugins import load_object
from tests.support.golden import GOLDEN_DIR, assert_close, load_fixture

FIX = load_fixture("lora-xs")
IMPL = GOLDEN_DIR.parent.parent / "methods" / "lora-xs"
lora_xs_layer = load_object("impl.py:lora_xs_layer", IMPL)
LoRAXSParams = load_object("impl.py:LoRAXSParams", IMPL)


def base_linear() -> torch.nn.Linear:
    base = torch.nn.Linear(FIX.config["d_in"], FIX.config["d_out"])
    with torch.no_grad():
        base.weight.copy_(FIX["W0"])
        base.bias.copy_(FIX["b0"])
    return base


def ours(**params):
    c = FIX.config
    p = LoRAXSParams(r=c["r"], alpha=c["alpha"], **params)
    return lora_xs_layer(base_linear(), p, torch.Generator().manual_seed(0))


def test_golden_lora_xs_frozen_factors_are_the_references_svd():
    """B = U_r, A = Sigma_r V_r^T. The reference's randomised TruncatedSVD lands within
    1e-6 of the exact SVD here (fixture notes), so the factors agree at the fixture
    tolerance once each singular pair's sign is aligned (an SVD fixes factors only up to
    those signs; B R A is unchanged by flipping a pair together with R's row/column)."""
    layer = ours()
    assert layer.scaling == FIX.config["scaling"]
    signs = torch.sign((layer.lora_B * FIX["lora_B"]).sum(0))
    assert_close(layer.lora_B * signs, FIX["lora_B"], "lora_B = U_r")
    assert_close(layer.lora_A * signs[:, None], FIX["lora_A"], "lora_A = Sigma_r V_r^T")
    assert_close(layer.lora_B @ layer.lora_A, FIX["lora_B"] @ FIX["lora_A"], "B A")
    assert torch.equal(layer.base.weight, FIX["W0"])  # W0 is left as it is


def test_golden_lora_xs_r_init_distribution():
    stats = FIX.meta["r_stats"]
    r = FIX.config["r_stats_rank"]
    layer = lora_xs_layer(torch.nn.Linear(40, 48), LoRAXSParams(r=r), torch.Generator())
    # 1024 normal draws: the sample std is within ~2.2% of the true one (1 sigma).
    assert float(layer.lora_R.detach().std()) == pytest.approx(stats["nominal_std"], rel=0.1)
    assert float(layer.lora_R.detach().std()) == pytest.approx(stats["std"], rel=0.1)
    assert abs(float(layer.lora_R.detach().mean())) < 0.2 * stats["nominal_std"]
    assert abs(float(FIX["init_R"].std()) - stats["nominal_std"]) < 0.5 * stats["nominal_std"]


def test_golden_lora_xs_forward_gradients_delta():
    layer = ours()
    with torch.no_grad():
        layer.lora_B.copy_(FIX["lora_B"])
        layer.lora_A.copy_(FIX["lora_A"])
        layer.lora_R.copy_(FIX["R"])
    out = layer(FIX["x"])
    assert_close(out, FIX["out"], "forward")
    out.backward(FIX["upstream"])
    assert_close(layer.lora_R.grad, FIX["grad_R"], "grad R")
    assert_close(layer.merged_weight() - FIX["W0"], FIX["delta"], "delta weight")
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == FIX.meta["trainable"]
