"""LQ-LoRA against the decomposition HanGuo97/lq-lora's own code produced (with the same
NF4 quantiser substituted: tests/golden/lq-lora/generate.py says why), and the adapter
it builds from it.

Where the reference's loop stops (the first iteration whose error exceeds the previous)
is round-off near convergence, which differs between LAPACK builds and thread counts: the
decomposition is compared after the number of iterations the reference ran (stored in the
fixture), and our stopping rule is checked on its own. The factors L1 = U sqrt(S), L2 =
sqrt(S) V^T are compared through L1 L2, L1 L1^T and L2^T L2, which are free of the SVD's
sign and near-tie freedoms (here sigma_8 and sigma_7 are 3% apart)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from suite.models.storage import CODECS, StoredLinear
from suite.plugins import load_object
from tests.support.golden import assert_close, load_fixture

ROOT = Path(__file__).resolve().parent.parent
FX = load_fixture("lq-lora")
CASES = {
    "exact": dict(randomized=False),
    "randomized": dict(randomized=True, oversampling=10),
    "fisher": dict(randomized=False, fisher=FX["F"]),
}


def _impl():
    """The method's module (loaded as the registry loads it)."""
    import sys

    cls = load_object("impl.py:LQLoRA", str(ROOT / "methods" / "lq-lora"))
    return sys.modules[cls.__module__]


def _quantize(x):
    codec = CODECS["nf4"]()
    encoded = codec.encode(x)
    return codec.decode(*encoded, x.shape).float(), encoded


def run(case: str, iterations: int, stop_early: bool):
    torch.manual_seed(0)  # the randomised SVD's draws, as the generator seeded them
    return _impl().decompose(
        FX["W"], 8, _quantize, iterations=iterations, stop_early=stop_early, **CASES[case]
    )


@functools.cache
def replay(case: str):
    """Our decomposition, run for as many iterations as the reference's."""
    return run(case, FX.meta["results"][f"{case}.iterations"], stop_early=False)


def assert_same_factors(l1, l2, case: str, what: str = "") -> None:
    ref1, ref2 = FX[f"{case}.L1"], FX[f"{case}.L2"]
    assert_close(l1 @ l2, ref1 @ ref2, f"{case}{what}: L1 L2")
    assert_close(l1 @ l1.T, ref1 @ ref1.T, f"{case}{what}: L1 L1^T (U S U^T)")
    assert_close(l2.T @ l2, ref2.T @ ref2, f"{case}{what}: L2^T L2 (V S V^T)")


@pytest.mark.parametrize("case", list(CASES))
def test_golden_lq_lora_decomposition(case):
    d = replay(case)
    assert d.iterations == FX.meta["results"][f"{case}.iterations"]
    assert_close(d.q, FX[f"{case}.Q"], f"{case}: Q")
    assert_same_factors(d.l1, d.l2, case)


@pytest.mark.parametrize("case", list(CASES))
def test_lq_lora_stops_at_the_first_error_increase(case):
    """The reference's rule, on whatever count this machine's round-off gives: the last
    error is the first to exceed its predecessor, and the result is that iteration's."""
    d = run(case, 100, stop_early=True)
    errors = d.errors
    assert 1 < d.iterations < 100 and errors[-1] > errors[-2]
    assert all(b <= a for a, b in zip(errors[:-1], errors[1:-1], strict=False))
    fixed = run(case, d.iterations, stop_early=False)
    assert fixed.errors == pytest.approx(errors, rel=1e-6)
    assert_close(fixed.q, d.q, f"{case}: Q after {d.iterations} iterations")
    # Where it stops, the error has flattened to the reference's final one (the spread
    # between machines' stopping points is a fraction of a percent here).
    ref = FX["W"] - (FX[f"{case}.L1"] @ FX[f"{case}.L2"] + FX[f"{case}.Q"])
    if "fisher" in CASES[case]:
        ref = torch.sqrt(FX["F"]) * ref
    assert errors[-1] == pytest.approx(float(torch.linalg.norm(ref)), rel=1e-2)


def layer(**overrides):
    """LQLoRALinear on the fixture's W, from the replayed exact decomposition."""
    impl, w = _impl(), FX["W"]
    base = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        base.weight.copy_(w)
        base.bias.copy_(torch.linspace(-1, 1, w.shape[0]))
    p = impl.LQLoRAParams(**{"r": 8, "alpha": 16, "svd": "exact", **overrides})
    return base, p, impl.LQLoRALinear(base, p, decomposition=replay("exact"))


def test_lq_lora_layer_stores_q_and_starts_at_q_plus_l1_l2():
    base, p, lq = layer()
    assert isinstance(lq.base, StoredLinear) and not lq.base.stored.data.requires_grad
    assert lq.iterations == FX.meta["results"]["exact.iterations"]
    # Q is the reference's Q (as stored), and s B A its L1 L2 (A = L2 / sqrt s, B = L1 / sqrt s).
    assert_close(lq.base.weight, FX["exact.Q"], "stored Q")
    s = p.alpha / p.r
    assert_same_factors(lq.lora_B.weight * math.sqrt(s), lq.lora_A.weight * math.sqrt(s), "exact")
    ref_delta = FX["exact.L1"] @ FX["exact.L2"]
    assert_close(lq.delta_weight(), ref_delta, "delta weight = L1 L2")
    assert_close(lq.merged_weight(), FX["exact.Q"] + ref_delta, "merged = Q + L1 L2")
    assert (lq.merged_weight() - FX["W"]).norm() < (FX["exact.Q"] - FX["W"]).norm() * 0.9
    x = torch.randn(5, FX["W"].shape[1], generator=torch.Generator().manual_seed(3))
    # (the stored base keeps its bias in the codec's compute dtype)
    expected = x @ (FX["exact.Q"] + ref_delta).T + lq.base.bias.float()
    assert_close(lq(x), expected, "forward = x (Q + L1 L2)^T + b")


@pytest.mark.parametrize("alpha", [8.0, 32.0])
def test_lq_lora_scale_is_absorbed_into_the_factors(alpha):
    """s = alpha / r moves between the factors and the scale: the update is L1 L2 for any
    alpha, and the trained factors are L1, L2 over sqrt(s)."""
    base, p, lq = layer(alpha=alpha)
    s = alpha / 8
    assert lq.scaling == s
    assert_close(lq.lora_B.weight, FX["exact.L1"] / math.sqrt(s), "B = L1 / sqrt s", tol=1e-4)
    x = torch.randn(3, FX["W"].shape[1], generator=torch.Generator().manual_seed(4))
    assert_close(lq.update(x), x @ (FX["exact.L1"] @ FX["exact.L2"]).T, "update = x (L1 L2)^T")


def test_bad_inputs_are_refused():
    impl = _impl()
    with pytest.raises(ValueError, match="fisher_examples needs training batches"):
        from suite.methods.api import PrepareContext

        ctx = PrepareContext(preset=None, seed=0, device=torch.device("cpu"))
        impl.empirical_fisher(nn.Module(), ctx, ["query"], 4)
    with pytest.raises(ValueError):
        impl.LQLoRAParams(storage="nf3")


def test_q_stays_nf4_on_a_bf16_base():
    """The engine's fp32 cast of new tensors must leave the stored Q alone."""
    from suite.train.prepare import prepare_model
    from tests.helpers import tiny_bench

    bench = tiny_bench()
    cls = load_object("impl.py:LQLoRA", str(ROOT / "methods" / "lq-lora"))
    method = cls(cls.Params(targets="qv", r=4, svd="exact"))
    model = bench.build(0).to(torch.bfloat16)
    made = prepare_model(method, model, _ctx(bench))
    layer = made.prepared.model.backbone.encoder.layer[0].attention.self.query
    data = layer.base.stored.data
    assert type(data).__name__ == "NF4Tensor" and data.dtype == torch.bfloat16
    assert layer.lora_A.weight.dtype == torch.float32 and made.base_dtype == "bfloat16"


def _ctx(bench):
    from suite.methods.api import PrepareContext

    return PrepareContext(preset=bench.preset, seed=0, device=torch.device("cpu"))
