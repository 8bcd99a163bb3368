"""Hydra against extremebird/Hydra's vision code (tests/golden/hydra)."""

from __future__ import annotations

import pytest
import torch

from suite.plugins import load_object
from tests.support.golden import GOLDEN_DIR, assert_close, load_fixture

FIX = load_fixture("hydra")
IMPL = GOLDEN_DIR.parent.parent / "methods" / "hydra"
Hydra = load_object("impl.py:Hydra", IMPL)
HydraLinear = load_object("impl.py:HydraLinear", IMPL)
HydraParams = load_object("impl.py:HydraParams", IMPL)


def ours_name(ref: str) -> str:
    """adapter_par.down_proj.weight -> hydra_par.0.weight (the fixture's notes)."""
    branch, proj, kind = ref.split(".")
    return f"hydra_{branch.removeprefix('adapter_')}.{0 if proj == 'down_proj' else 1}.{kind}"


def ours(d_in: int | None = None, seed: int = 0) -> torch.nn.Module:
    c = FIX.config
    r = c["bottleneck"]
    if d_in is not None:
        base = torch.nn.Linear(d_in, c["d_out"])
    else:
        base = torch.nn.Linear(c["d_in"], c["d_out"])
        with torch.no_grad():
            base.weight.copy_(FIX["W0"])
            base.bias.copy_(FIX["b0"])
    p = HydraParams(r_par=r, r_seq=r, scale=c["scale"])
    return HydraLinear(base, p, torch.Generator().manual_seed(seed))


def test_golden_hydra_init():
    layer = ours()
    params = dict(layer.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert trainable == {ours_name(n) for n in FIX.meta["names"]}
    for ref_name, shape in FIX.meta["names"].items():
        assert list(params[ours_name(ref_name)].shape) == shape
        if "down_proj.weight" not in ref_name:  # zeros in the reference
            assert_close(params[ours_name(ref_name)], FIX[f"init.{ref_name}"], ref_name, tol=0.0)
    assert sum(params[n].numel() for n in trainable) == FIX.meta["trainable"]
    shape = (FIX.config["d_out"], FIX.config["d_in"])
    r = FIX.config["bottleneck"]
    assert Hydra(HydraParams(r_par=r, r_seq=r)).expected_trainable_params([shape]) == 180


def test_golden_hydra_down_projection_distribution():
    stats = FIX.meta["down_stats"]
    down = ours(d_in=1024).hydra_par[0].weight.detach()
    # 2048 normal draws: the sample std is within ~1.6% of the true one (1 sigma).
    assert float(down.std()) == pytest.approx(stats["nominal_std"], rel=0.06)
    assert float(down.std()) == pytest.approx(stats["std"], rel=0.08)
    assert abs(float(down.mean())) < 0.1 * stats["nominal_std"]


def test_golden_hydra_forward_gradients_delta():
    layer = ours()
    params = dict(layer.named_parameters())
    with torch.no_grad():
        for ref_name in FIX.meta["names"]:
            params[ours_name(ref_name)].copy_(FIX[f"loaded.{ref_name}"])
    out = layer(FIX["x"])
    assert_close(out, FIX["out"], "forward")
    out.backward(FIX["upstream"])
    for ref_name in FIX.meta["names"]:
        assert_close(params[ours_name(ref_name)].grad, FIX[f"grad.{ref_name}"], f"grad {ref_name}")
    assert_close(layer.delta_weight(), FIX["delta_weight"], "delta weight")
    assert_close(layer.delta_bias(), FIX["delta_bias"], "delta bias")
    layer.merge()
    assert_close(layer(FIX["x"]), FIX["out"], "merged forward")
