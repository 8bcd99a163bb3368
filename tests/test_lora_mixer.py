"""LoRA-Mixer's reconstructed equations, each against a hand computation: the soft gate in
training and the renormalised top-k gate at evaluation, the routed output, and the
routing specialisation loss (balance + entropy); SMoRA's and MoLE's gates are untouched
(their own tests run on the same module)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, tiny_preset

E, R, K, D_IN, D_OUT = 4, 2, 2, 6, 5


def mixer(**params):
    params = {"experts": E, "r": R, "top_k": K, "alpha": 4, "targets": ["a"], **params}
    method = C.instantiate(
        resolve_method(catalog(), MethodEntry(method="lora-mixer", params=params))
    )
    model = nn.Module()
    model.backbone = nn.Module()
    model.backbone.a = nn.Linear(D_IN, D_OUT)
    model.head = nn.Linear(1, 1)
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    prepared = method.prepare(model, ctx)
    layer = model.backbone.a
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=gen))
        layer.router.weight.copy_(torch.randn(layer.router.weight.shape, generator=gen))
    return prepared, layer


def by_hand(layer, x, gate):
    """y = W0 x + (alpha / r) sum_e g_e B_e A_e x, expert e = ranks e r .. (e + 1) r."""
    out = layer.base(x)
    for e in range(E):
        a = layer.lora_A.weight[e * R : (e + 1) * R]
        b = layer.lora_B.weight[:, e * R : (e + 1) * R]
        out = out + (4 / R) * gate[..., e : e + 1] * (x @ a.T @ b.T)
    return out


def test_training_fuses_every_expert_by_the_softmax():
    _, layer = mixer()
    layer.train()
    x = torch.randn(3, D_IN, generator=torch.Generator().manual_seed(1))
    p = F.softmax(x @ layer.router.weight.T, dim=-1)
    assert torch.allclose(layer(x), by_hand(layer, x, p), atol=1e-5)


def test_evaluation_keeps_the_renormalised_top_k():
    _, layer = mixer()
    layer.eval()
    x = torch.randn(3, D_IN, generator=torch.Generator().manual_seed(1))
    p = F.softmax(x @ layer.router.weight.T, dim=-1)
    keep = torch.zeros_like(p)
    for t in range(3):
        top = sorted(range(E), key=lambda e: -float(p[t, e]))[:K]
        for e in top:
            keep[t, e] = p[t, e] / sum(float(p[t, j]) for j in top)
    assert torch.allclose(layer(x), by_hand(layer, x, keep), atol=1e-5)
    layer.routing = "topk"
    layer.train()
    assert torch.allclose(layer(x), by_hand(layer, x, keep), atol=1e-5)


@pytest.mark.parametrize("entropy_weight", [0.01, -0.02, 0.0])
def test_specialization_loss_is_balance_plus_entropy(entropy_weight):
    prepared, layer = mixer(balance_weight=0.1, entropy_weight=entropy_weight)
    layer.train()
    x = torch.randn(7, D_IN, generator=torch.Generator().manual_seed(2))
    layer(x)
    p = F.softmax(x @ layer.router.weight.T, dim=-1)
    counts = torch.zeros(E)
    for t in range(7):
        for e in torch.topk(p[t], K).indices.tolist():
            counts[e] += 1
    f = counts / (7 * K)
    balance = 0.1 * E * float((f * p.mean(0)).sum())
    entropy = float(-(p * torch.log(p)).sum(-1).mean())
    expected = balance + entropy_weight * entropy
    assert math.isclose(float(prepared.hooks.extra_loss()), expected, rel_tol=1e-5)


def test_router_and_every_expert_learn_in_training():
    _, layer = mixer()
    layer.train()
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(3))
    layer(x).sum().backward()
    assert float(layer.router.weight.grad.abs().sum()) > 0
    per_expert = layer.lora_A.weight.grad.view(E, R, D_IN).abs().sum((1, 2))
    assert bool((per_expert > 0).all())


def test_top_k_above_the_experts_is_refused():
    with pytest.raises(ValueError, match="top_k"):
        mixer(top_k=E + 1)
