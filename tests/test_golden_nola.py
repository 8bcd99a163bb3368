"""NOLA against UCDvision/NOLA's own code (tests/golden/nola: generate.py says how)."""

from __future__ import annotations

import pytest
import torch

from suite.cells import resolve_method
from suite.plugins import load_object
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog
from tests.support.golden import GOLDEN_DIR, assert_close, load_fixture

FIX = load_fixture("nola")
IMPL = GOLDEN_DIR.parent.parent / "methods" / "nola"
NOLALinear = load_object("impl.py:NOLALinear", IMPL)
NOLAParams = load_object("impl.py:NOLAParams", IMPL)


def layer(regenerate: bool) -> torch.nn.Module:
    """Our adapter on the fixture's base weights, with the reference's seeds and A0."""
    c = FIX.config
    base = torch.nn.Linear(c["d_in"], c["d_out"])
    with torch.no_grad():
        base.weight.copy_(FIX["W0"])
        base.bias.copy_(FIX["b0"])
    params = NOLAParams(
        r=c["rank"],
        alpha=c["alpha"],
        num_basis_A=c["num_basis_A"],
        num_basis_B=c["num_basis_B"],
        regenerate=regenerate,
    )
    seed_a, seed_b = (int(s) for s in FIX["seeds"])
    adapter = NOLALinear(base, params, seeds=(seed_a, seed_b, 99))
    with torch.no_grad():
        adapter.lora_A0.copy_(FIX["A0"])  # the reference draws A0 from the global RNG
    return adapter


def test_golden_nola_defaults_follow_the_cited_gpt2m_script():
    script = FIX.config["script_defaults"]
    yaml_params = resolve_method(catalog(), MethodEntry(method="nola")).params
    for params in (NOLAParams(), NOLAParams(**yaml_params)):
        assert (params.num_basis_A, params.num_basis_B) == (script["num_basis"],) * 2
        assert (params.r, params.alpha) == (script["rank"], script["alpha"])


@pytest.mark.parametrize("regenerate", [True, False])
def test_golden_nola_init_and_bases(regenerate):
    adapter = layer(regenerate)
    assert adapter.scaling == FIX.config["scale"]
    assert_close(adapter.coef_A, FIX["init_coef_A"], "initial coef_A")
    assert_close(adapter.coef_B, FIX["init_coef_B"], "initial coef_B")
    # B0 is zero in the reference; ours has no B0 at all (B is the mixture alone).
    assert torch.count_nonzero(FIX["B0"]) == 0
    # The bases, regenerated from the stored seeds, are the reference's (same CPU stream).
    bases_a, bases_b = adapter.bases()
    assert_close(bases_a, FIX["bases_A"], "bases of A", tol=0.0)
    assert_close(bases_b, FIX["bases_B"], "bases of B", tol=0.0)
    # ... and so uniform in [-1, 1] / sqrt(k).
    for bases, k in ((bases_a, FIX.config["num_basis_A"]), (bases_b, FIX.config["num_basis_B"])):
        assert float(bases.abs().max()) <= k**-0.5
        assert float(bases.std()) == pytest.approx((3 * k) ** -0.5, rel=0.1)


def test_golden_nola_a0_distribution():
    """A0 is nn.Linear's Kaiming-uniform(a=sqrt 5): U[-1/sqrt(d_in), 1/sqrt(d_in)]."""
    stats = FIX.meta["a0_stats"]
    rank, d_in = FIX.config["a0_stats_shape"]
    params = NOLAParams(r=rank, alpha=rank, num_basis_A=8, num_basis_B=8)
    a0 = NOLALinear(torch.nn.Linear(d_in, 16), params, seeds=(1, 2, 3)).lora_A0
    assert float(a0.abs().max()) <= stats["bound"]
    assert float(a0.abs().max()) > 0.95 * stats["bound"]
    # Sample std of 2048 uniforms: ~1.6% spread; the reference's own sample is within it.
    assert float(a0.std()) == pytest.approx(stats["std"], rel=0.05)
    assert abs(float(a0.mean())) < 0.1 * stats["bound"]


@pytest.mark.parametrize("regenerate", [True, False])
def test_golden_nola_forward_gradients_delta(regenerate):
    adapter = layer(regenerate)
    with torch.no_grad():
        adapter.coef_A.copy_(FIX["coef_A"])
        adapter.coef_B.copy_(FIX["coef_B"])
    out = adapter(FIX["x"])
    assert_close(out, FIX["out"], "forward")
    out.backward(FIX["upstream"])
    assert_close(adapter.coef_A.grad, FIX["grad_coef_A"], "grad coef_A")
    assert_close(adapter.coef_B.grad, FIX["grad_coef_B"], "grad coef_B")
    assert_close(adapter.merged_weight() - FIX["W0"], FIX["delta"], "delta weight")
    trainable = sum(p.numel() for p in adapter.parameters() if p.requires_grad)
    assert trainable == FIX.meta["trainable"]


def test_golden_nola_regenerated_mode_keeps_no_bases_resident():
    """As the official GenerateParams: memory holds the coefficients, not the bases."""
    adapter = layer(regenerate=True)
    sizes = {name: b.numel() for name, b in adapter.named_buffers()}
    assert "bases_A" not in sizes and "bases_B" not in sizes
    resident = layer(regenerate=False)
    assert {"bases_A", "bases_B"} <= {name for name, _ in resident.named_buffers()}
