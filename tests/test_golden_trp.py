"""TRP against yuhuixu1993/Trained-Rank-Pruning's own low_rank_approx, training-step order
and channel_decompose (tests/golden/trp/generate.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from suite.plugins import load_object
from tests.support.golden import assert_close, load_fixture

IMPL = str(Path(__file__).resolve().parent.parent / "methods" / "trp")
NAMES = ("0", "2")  # the reference's conv names (Sequential indices)


def _impl():
    return sys.modules[load_object("impl.py:TRP", IMPL).__module__]


def _setup(fx):
    """The two bias-free layers at the fixture's initial weights, and the step hooks."""
    impl, layers = _impl(), []
    for name, (d_out, d_in) in zip(NAMES, fx.config["shapes"], strict=True):
        lin = nn.Linear(d_in, d_out, bias=False)
        lin.weight.data.copy_(fx[f"init.{name}.weight"].flatten(1))
        layers.append(impl.TRPLinear(lin))
    c = fx.config
    params = impl.TRPParams(
        energy=c["energy"], period=c["period"], nuclear_weight=c["nuclear_weight"]
    )
    return layers, impl._TRP(layers, params)


def _forward(layers, x):
    return layers[1](F.relu(layers[0](x)))


def _pair_product(n, c):
    return n @ c  # each singular pair's sign is LAPACK's choice; N C does not depend on it


def test_golden_trp_projection_subgradient_and_steps():
    fx = load_fixture("trp")
    layers, hooks = _setup(fx)
    c = fx.config
    opt = torch.optim.SGD([m.weight for m in layers], **c["sgd"])
    impl = _impl()
    ranks = [
        [impl.energy_rank(torch.linalg.svdvals(m.weight.detach()), c["energy"]) for m in layers]
    ]
    hooks.on_train_start(c["steps"])
    for m, name, sub in zip(layers, NAMES, hooks.subs, strict=True):
        assert_close(m.weight, fx[f"approx.{name}.weight"].flatten(1), f"projected {name}")
        assert_close(sub, fx[f"sub.{name}"].flatten(1), f"subgradient {name}")
    for step in range(c["steps"]):
        loss = F.cross_entropy(_forward(layers, fx["x"][step]), fx["y"][step])
        assert_close(loss.detach().reshape(1), fx[f"loss{step}"], f"loss {step}")
        opt.zero_grad()
        loss.backward()
        hooks.after_backward(step)
        opt.step()
        if (step + 1) % c["period"] == 0 and step + 1 < c["steps"]:
            ranks.append([impl.energy_rank(torch.linalg.svdvals(m.weight.detach()), c["energy"])
                          for m in layers])  # fmt: skip
        for m, name in zip(layers, NAMES, strict=True):
            assert_close(m.weight, fx[f"step{step}.{name}.weight"].flatten(1), f"W {name} @ {step}")
        hooks.after_optimizer_step(step)  # projects for the next step's forward
    assert ranks == c["energy_ranks"]


def test_golden_trp_final_decomposition_and_count():
    fx = load_fixture("trp")
    layers, hooks = _setup(fx)
    steps = fx.config["steps"]
    for m, name in zip(layers, NAMES, strict=True):
        m.weight.data.copy_(fx[f"step{steps - 1}.{name}.weight"].flatten(1))
        assert_close(torch.linalg.svdvals(m.weight.detach()), fx[f"sigma.{name}"], f"sigma {name}")
    kept = []
    for m, name in zip(layers, NAMES, strict=True):
        n, c = m.decompose(fx.config["value_threshold"])
        ref_n, ref_c = fx[f"final.{name}.N"], fx[f"final.{name}.C"]
        assert n.shape == ref_n.shape and c.shape == ref_c.shape, name
        assert_close(_pair_product(n, c), _pair_product(ref_n, ref_c), f"N C {name}")
        assert_close(m.weight, _pair_product(ref_n, ref_c), f"decomposed W {name}")
        kept.append(int(m.rank))
    assert kept == fx.config["final_ranks"]
    # the trained count: r (d_in + d_out) per layer (these layers have no bias)
    expected = sum(r * (i + o) for r, (o, i) in zip(kept, fx.config["shapes"], strict=True))
    assert sum(m.trained_count() for m in layers) == expected
