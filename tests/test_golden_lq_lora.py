"""LQ-LoRA against the decomposition HanGuo97/lq-lora's own code produced (with the same
NF4 quantiser substituted: tests/golden/lq-lora/generate.py says why), and the adapter
it builds from it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from suite.models.storage import CODECS, StoredLinear
from suite.plugins import load_object
from tests.support.golden import TOL, load_fixture

ROOT = Path(__file__).resolve().parent.parent


def _impl():
    """The method's module (loaded as the registry loads it)."""
    import sys

    cls = load_object("impl.py:LQLoRA", str(ROOT / "methods" / "lq-lora"))
    return sys.modules[cls.__module__]


def _quantize(x):
    codec = CODECS["nf4"]()
    encoded = codec.encode(x)
    return codec.decode(*encoded, x.shape).float(), encoded


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("exact", dict(randomized=False)),
        ("randomized", dict(randomized=True, oversampling=10)),
        ("fisher", dict(randomized=False, fisher="F")),
    ],
)
def test_golden_lq_lora_decomposition(case, kwargs):
    fx = load_fixture("lq-lora")
    impl = _impl()
    if kwargs.get("fisher"):
        kwargs = {**kwargs, "fisher": fx["F"]}
    torch.manual_seed(0)
    l1, l2, q, _enc, ran = impl.decompose(fx["W"], 8, _quantize, iterations=100, **kwargs)
    assert ran == fx.meta["results"][f"{case}.iterations"]
    for name, ours in (("L1", l1), ("L2", l2), ("Q", q)):
        ref = fx[f"{case}.{name}"]
        scale = max(1.0, float(ref.abs().max()))
        assert torch.allclose(ours, ref, atol=TOL * scale, rtol=0), (case, name)


def test_lq_lora_layer_stores_q_and_starts_at_q_plus_l1_l2():
    fx = load_fixture("lq-lora")
    impl = _impl()
    w = fx["W"]
    base = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        base.weight.copy_(w)
    p = impl.LQLoRAParams(r=8, alpha=16, svd="exact")
    layer = impl.LQLoRALinear(base, p)
    assert isinstance(layer.base, StoredLinear) and not layer.base.stored.data.requires_grad
    # Q is the reference's Q (as stored), and s B A its L1 L2.
    assert torch.allclose(layer.base.weight.float(), fx["exact.Q"], atol=TOL)
    s = p.alpha / p.r
    assert torch.allclose(layer.lora_B.weight * math.sqrt(s), fx["exact.L1"], atol=TOL)
    assert torch.allclose(layer.lora_A.weight * math.sqrt(s), fx["exact.L2"], atol=TOL)
    merged = layer.base.weight.float() + layer.delta_weight()
    lora_err = (merged - w).norm()
    assert lora_err < (fx["exact.Q"] - w).norm() * 0.9  # L1 L2 absorbs part of the error
    x = torch.randn(5, w.shape[1])
    expected = x @ merged.T + base.bias
    assert torch.allclose(layer(x), expected, atol=2e-2)


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
