"""Maestro against SamuelHorvath/Maestro-LoD's own layer, regulariser, shrinking and
sampler (tests/golden/maestro/generate.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from suite.plugins import load_object
from tests.support.golden import assert_close, load_fixture

IMPL = str(Path(__file__).resolve().parent.parent / "methods" / "maestro")
REF_NAMES = {"in_weight": "in_network.weight", "out_weight": "out_network.weight",
             "bias": "out_network.bias"}  # fmt: skip


def _impl():
    return sys.modules[load_object("impl.py:Maestro", IMPL).__module__]


def _layers(fx):
    impl, layers = _impl(), []
    for i, (d_in, d_out) in enumerate(((24, 12), (12, 16))):
        lin = nn.Linear(d_in, d_out)
        lin.load_state_dict({k: fx[f"base.{2 * i}.{k}"] for k in ("weight", "bias")})
        layer = impl.MaestroLinear(lin)
        w_in, w_out = fx[f"maestro.{i}.in_network.weight"], fx[f"maestro.{i}.out_network.weight"]
        # each singular pair's sign is LAPACK's choice; out @ in does not depend on it
        signs = torch.sign((layer.in_weight * w_in).sum(1))
        assert_close(layer.in_weight * signs[:, None], w_in, f"in factor {i}")
        assert_close(layer.out_weight * signs[None, :], w_out, f"out factor {i}")
        with torch.no_grad():
            layer.in_weight.copy_(w_in)
            layer.out_weight.copy_(w_out)
        layers.append(layer)
    return layers


def _forward(layers, x, shares):
    for layer, p in zip(layers, shares, strict=True):
        layer.p = p
    return layers[1](F.relu(layers[0](x)))


def test_golden_maestro_layer_lasso_and_gradients():
    fx = load_fixture("maestro")
    layers = _layers(fx)
    shares = fx.config["shares"]
    assert_close(_forward(layers, fx["x"], (None, None)), fx["y_full"], "full-width output")
    assert_close(_forward(layers, fx["x"], shares), fx["y_sampled"], "sampled output")
    lasso = sum(m.group_lasso() for m in layers)
    assert_close(lasso.reshape(1), fx["group_lasso"], "hierarchical group lasso")
    loss = _forward(layers, fx["x"], shares).sum() + fx.config["lasso_weight"] * lasso
    loss.backward()
    for i, m in enumerate(layers):
        for ours, theirs in REF_NAMES.items():
            assert_close(getattr(m, ours).grad, fx[f"grad.{i}.{theirs}"], f"grad {i} {ours}")


def test_golden_maestro_shrinking_and_sampler():
    fx = load_fixture("maestro")
    layers = _layers(fx)
    for i, m in enumerate(layers):
        tail_in, tail_out = m.hierarchical_norms()
        assert_close(tail_in * tail_out, fx[f"importance.{i}"], f"importance {i}")
        m.shrink(fx.config["threshold"])
        assert torch.equal(m.keep, fx[f"keep.{i}"].bool()), i
    assert [m.width for m in layers] == fx.config["widths_at_draw"]
    assert_close(_forward(layers, fx["x"], (None, None)), fx["y_shrunk"], "shrunk output")
    shares = fx.config["shares"]
    assert_close(_forward(layers, fx["x"], shares), fx["y_shrunk_sampled"], "shrunk sampled")
    reference_out = _forward(layers, fx["x"], (None, None))
    for m in layers:
        m.prune()
    assert_close(_forward(layers, fx["x"], (None, None)), reference_out, "pruned output")
    rng, impl = np.random.RandomState(fx.config["sampler_seed"]), _impl()
    draws = [impl.draw_share(rng, layers[k % 2].width) for k in range(len(fx["draws"]))]
    assert torch.equal(torch.tensor(draws, dtype=torch.float64), fx["draws"])
