"""CoDyRA against Artificer-AI-Lab/CoDyRA's own layer and rank-selection lines
(tests/golden/codyra/generate.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from suite.plugins import load_object
from tests.support.golden import assert_close, load_fixture

IMPL = str(Path(__file__).resolve().parent.parent / "methods" / "codyra")


def _impl():
    return sys.modules[load_object("impl.py:CoDyRA", IMPL).__module__]


def _layer(fx):
    impl = _impl()
    base = nn.Linear(fx.config["d_in"], fx.config["d_out"])
    base.load_state_dict({k: fx[f"init.{k}"] for k in ("weight", "bias")})
    layer = impl.CoDyRALinear(base, impl.CoDyRAParams(r=fx.config["r"]))
    with torch.no_grad():
        layer.lora_A.copy_(fx["init.lora_A"])
        layer.lora_B.copy_(fx["init.lora_B"])
        layer.gate.copy_(fx["init.gate"].reshape(-1))
    return layer


def test_golden_codyra_forward_and_gradients():
    fx = load_fixture("codyra")
    layer = _layer(fx)
    y = layer(fx["x"])
    assert_close(y, fx["y"], "output")
    (y * fx["proj"]).sum().backward()
    assert_close(layer.lora_A.grad, fx["grad.lora_A"], "grad A")
    assert_close(layer.lora_B.grad, fx["grad.lora_B"], "grad B")
    assert_close(layer.gate.grad, fx["grad.gate"].reshape(-1), "grad gate")


def test_golden_codyra_task_boundary_merges_the_gated_update_into_w():
    fx = load_fixture("codyra")
    layer = _layer(fx)
    with torch.no_grad():
        layer.gate[fx.config["zeroed_gate"]] = 0.0
    torch.manual_seed(fx.config["boundary_seed"])
    layer.next_task()
    assert_close(layer.base.weight, fx["after.weight"], "merged weight")
    # the reference keeps the merged ranks (gate folded into A) only for bookkeeping
    kept = fx["after.old_lora_A"].shape[0]
    assert kept == fx.config["r"] - 1
    merged = fx["after.old_lora_B"] @ fx["after.old_lora_A"]
    assert_close(layer.base.weight - fx["init.weight"], merged, "merged delta")
    assert_close(layer(fx["x"]), fx["after.y"], "output after the boundary")
    # the fresh factors and gate, drawn as the reference draws them (gate, then A)
    assert_close(layer.lora_A, fx["after.lora_A"], "fresh A")
    assert_close(layer.lora_B, fx["after.lora_B"], "fresh B")
    assert_close(layer.gate, fx["after.gate"].reshape(-1), "fresh gate")
    assert not layer.merged
    assert layer.lora_A.requires_grad and not layer.base.weight.requires_grad


@pytest.mark.parametrize("name", ["even", "ragged", "flat"])
def test_golden_codyra_gate_trajectory_through_the_schedule(name):
    fx = load_fixture("codyra")
    impl = _impl()
    total, dense, num, kappa = fx.config["schedules"][name]
    p = impl.CoDyRAParams(r=8, max_kappa=kappa, lambda_num=num, dense_fraction=dense)
    layer = impl.CoDyRALinear(nn.Linear(6, 6), p)
    traj = fx[f"traj.{name}"]
    with torch.no_grad():
        layer.gate.copy_(traj[0])
    hooks = impl.CoDyRAHooks([layer], p)
    hooks.on_train_start(total)
    for t in range(total):
        assert_close(layer.gate, traj[t], f"{name}: gate before the prune of step {t}")
        hooks.after_optimizer_step(t)
    assert_close(layer.gate, traj[total], f"{name}: final gate")
    if name != "flat":
        assert (traj[total] == 0).any(), "the schedule should switch some rank off"
