"""PELA against guoyang9/PELA's own low-rank replacement and weight regulariser, and its
distillation term by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from suite import conformance as C
from suite.plugins import load_object
from tests.helpers import tiny_bench
from tests.support.golden import TOL, load_fixture

IMPL = str(Path(__file__).resolve().parent.parent / "methods" / "pela")


def _impl():
    return sys.modules[load_object("impl.py:PELA", IMPL).__module__]


def _teacher(fx):
    teacher = nn.Sequential(nn.Linear(24, 40), nn.ReLU(), nn.Linear(40, 16))
    teacher.load_state_dict(
        {k[len("teacher.") :]: v for k, v in fx.tensors.items() if k.startswith("teacher.")}
    )
    return teacher


def test_golden_pela_low_rank_replacement_and_inf_norm():
    fx, impl = load_fixture("pela"), _impl()
    teacher = _teacher(fx)
    layers = []
    for i in (0, 2):
        lin = teacher[i]
        rank = impl.pela_rank(lin.in_features, lin.out_features, 3)
        layer = impl.LowRankLinear(lin, rank)
        # The reference's nn.Sequential(first, second): student.{i}.0 / student.{i}.1,
        # compared up to each singular pair's sign (LAPACK builds choose it differently;
        # second @ first, which the rest of the test uses, does not depend on it).
        first, second = fx[f"student.{i}.0.weight"], fx[f"student.{i}.1.weight"]
        signs = torch.sign((layer.first.weight * first).sum(1))
        assert torch.allclose(layer.first.weight * signs[:, None], first, atol=TOL), i
        assert torch.allclose(layer.second.weight * signs[None, :], second, atol=TOL), i
        assert torch.allclose(layer.second.bias, fx[f"student.{i}.1.bias"], atol=TOL), i
        layers.append(layer)
    student = nn.Sequential(layers[0], nn.ReLU(), layers[1])
    assert torch.allclose(student(fx["x"]), fx["y"], atol=TOL)
    pairs = [(layers[0], teacher[0].weight), (layers[1], teacher[2].weight)]
    penalty = impl.inf_norm_penalty(pairs, 1e-3)
    assert abs(float(penalty) - fx.meta["results"]["inf_norm"]) < 1e-6
    with torch.no_grad():
        for layer, i in zip(layers, (0, 2), strict=True):
            layer.first.weight.copy_(fx[f"perturbed.{i}.0.weight"])
            layer.second.weight.copy_(fx[f"perturbed.{i}.1.weight"])
    penalty = impl.inf_norm_penalty(pairs, 1e-3)
    assert abs(float(penalty) - fx.meta["results"]["inf_norm_perturbed"]) < 1e-6


def _pela(**params):
    cls = load_object("impl.py:PELA", IMPL)
    return cls(cls.Params(**{"targets": "attention", **params}))


def test_pela_loss_terms_by_hand():
    bench, impl = tiny_bench(), _impl()
    prepared = C.prepare(_pela(kd_weight=0.5, norm_weight=2.0), bench)
    model, hooks = prepared.model, prepared.hooks
    model.train()
    batch = bench.batches[0]
    C.loss_fn(model, batch)
    extra = hooks.extra_loss()
    # By hand: the teacher (the original backbone) on the same inputs, per-layer MSE.
    teacher = bench.build(0).backbone.eval()
    kw = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        t_states = teacher(**kw, output_hidden_states=True).hidden_states[1:]
        s_states = model.backbone(**kw, output_hidden_states=True).hidden_states[1:]
    kd = torch.stack(
        [torch.mean((s - t) ** 2) for s, t in zip(s_states, t_states, strict=True)]
    ).mean()
    norms = []
    for name, module in model.backbone.named_modules():
        if isinstance(module, impl.LowRankLinear):
            w = teacher.get_submodule(name).weight
            norms.append(((module.second.weight @ module.first.weight - w).abs().max() - 1e-3) ** 2)
    expected = 0.5 * kd + 2.0 * torch.stack(norms).mean()
    assert torch.allclose(extra, expected, atol=1e-6)
    # Rank floor(32 * 32 / (3 * 64)) = 5 on every 32 x 32 attention matrix; all trains.
    q = model.backbone.encoder.layer[0].attention.self.query
    assert q.first.weight.shape == (5, 32) and all(p.requires_grad for p in model.parameters())
    assert prepared.base_bytes() == sum(p.numel() * 4 for p in model.backbone.parameters()) + sum(
        b.numel() * b.element_size() for b in model.backbone.buffers()
    )
