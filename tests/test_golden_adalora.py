"""AdaLoRA against Hugging Face PEFT (tests/golden/adalora; PyPI peft 0.21.2), live and
stored: init statistics, forward, gradients, the orthogonal term, and 10 steps of budget
schedule, lambda masks and tensors with update_and_allocate after each optimizer step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from suite.methods.api import PrepareContext
from suite.plugins import load_object
from suite.registry import Catalog
from tests.helpers import load_script
from tests.support.golden import GOLDEN_DIR, assert_close, load_fixture

FIX = load_fixture("adalora")
CFG = FIX.config


GEN = load_script(GOLDEN_DIR / "adalora" / "generate.py")


def _ours():
    entry = Catalog.discover().methods.get("adalora")
    cls = load_object(entry.spec.implementation, entry.path.parent)
    params = cls.Params.model_validate(
        {
            "init_r": CFG["init_r"],
            "target_r": CFG["target_r"],
            "alpha": CFG["lora_alpha"],
            "tinit": CFG["tinit"],
            "tfinal": CFG["tfinal"],
            "deltaT": CFG["deltaT"],
            "beta1": CFG["beta1"],
            "beta2": CFG["beta2"],
            "orth_reg_weight": CFG["orth_reg_weight"],
            "targets": ["l0", "l1"],
        }
    )
    net = GEN.Net()
    with torch.no_grad():
        for k, layer in enumerate((net.l0, net.l1)):
            layer.weight.copy_(FIX[f"l{k}.weight"])
            layer.bias.copy_(FIX[f"l{k}.bias"])
    holder = nn.Module()
    holder.backbone = net
    ctx = PrepareContext(
        preset=SimpleNamespace(resolve_targets=lambda t: list(t)),
        seed=0,
        device=torch.device("cpu"),
    )
    prepared = cls(params).prepare(holder, ctx)
    layers = [net.l0, net.l1]
    with torch.no_grad():
        for k, m in enumerate(layers):
            m.lora_A[0].copy_(FIX[f"l{k}.A"])
            m.lora_B[0].copy_(FIX[f"l{k}.B"])
            m.lora_E[0].copy_(FIX[f"l{k}.E"])
    return prepared, net, layers


def _tensors(m):
    return {"A": m.lora_A[0], "B": m.lora_B[0], "E": m.lora_E[0]}


@pytest.fixture(scope="module")
def live():
    """PEFT rerun now on the stored inputs (catches a PEFT upgrade that changed it)."""
    inputs = {k: FIX[k] for k in GEN.inputs()}
    return GEN.reference(inputs)


@pytest.fixture(scope="module")
def ours():
    prepared, net, layers = _ours()
    hooks = prepared.hooks
    out = {}
    x, y = FIX["step0.x"], FIX["step0.y"]
    net.train()
    result = net(x, y)
    out["forward"] = result.out.detach()
    out["loss_task"] = result.loss.detach().reshape(1)
    total = result.loss + hooks.extra_loss()
    out["loss_total"] = total.detach().reshape(1)
    total.backward()
    for k, m in enumerate(layers):
        for name, p in _tensors(m).items():
            out[f"grad.l{k}.{name}"] = p.grad.detach().clone()
    net.zero_grad(set_to_none=True)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=CFG["lr"], weight_decay=0.0)
    hooks.bind_optimizer(optimizer)
    hooks.on_train_start(CFG["total_step"])
    budgets = []
    for step in range(CFG["total_step"]):
        loss = net(FIX[f"step{step}.x"], FIX[f"step{step}.y"]).loss + hooks.extra_loss()
        loss.backward()
        optimizer.step()
        hooks.after_optimizer_step(step)
        optimizer.zero_grad(set_to_none=True)
        budgets.append(hooks.budget_schedule(step)[0])
        for k, m in enumerate(layers):
            for name, p in _tensors(m).items():
                out[f"step{step}.l{k}.{name}"] = p.detach().clone()
    out["budgets"] = torch.tensor(budgets, dtype=torch.float32)
    out["trainable"] = torch.tensor([float(sum(p.numel() for p in params))])
    return out


@pytest.mark.parametrize("source", ["stored", "live"])
def test_golden_adalora_forward_gradients_and_orthogonal_term(ours, live, source):
    ref = FIX.tensors if source == "stored" else live
    assert_close(ours["forward"], ref["forward"], "forward")
    assert_close(ours["loss_task"], ref["loss_task"], "task loss")
    assert_close(ours["loss_total"], ref["loss_total"], "loss with the orthogonal term")
    assert float(ref["loss_total"] - ref["loss_task"]) > 1e-3  # the term is really there
    for key in ref:
        if key.startswith("grad."):
            assert_close(ours[key], ref[key], key)


@pytest.mark.parametrize("source", ["stored", "live"])
def test_golden_adalora_budget_schedule_and_masks(ours, live, source):
    ref = FIX.tensors if source == "stored" else live
    assert_close(ours["budgets"], ref["budgets"], "budget per step")
    for step in range(CFG["total_step"]):
        for k in range(2):
            e_ours, e_ref = ours[f"step{step}.l{k}.E"], ref[f"step{step}.l{k}.E"]
            assert torch.equal(e_ours == 0, e_ref == 0), f"mask of l{k} at step {step}"
            for name in ("A", "B", "E"):
                key = f"step{step}.l{k}.{name}"
                assert_close(ours[key], ref[key], key)
    assert float(ours["trainable"]) == float(ref["trainable"])


def test_golden_adalora_initial_tensor_statistics():
    # Random streams differ from PEFT's; compare the distributions on the same layer shape
    # (512 -> 256, r = 8): std within 5% of PEFT's, mean within 4 standard errors, E = 0.
    from suite.methods.svd_adapters import SVDLinear

    stats = FIX.meta["init_statistics"]
    torch.manual_seed(1)
    layer = SVDLinear(nn.Linear(512, 256), r=8, alpha=8)
    for name, t in (("A", layer.lora_A[0]), ("B", layer.lora_B[0])):
        t = t.detach()
        assert t.numel() == stats[f"{name}_numel"]
        assert abs(float(t.std()) - stats[f"{name}_std"]) < 0.05 * stats[f"{name}_std"]
        assert abs(float(t.mean())) < 4 * 0.02 / t.numel() ** 0.5
        assert abs(stats[f"{name}_mean"]) < 4 * 0.02 / t.numel() ** 0.5
    assert float(layer.lora_E[0].detach().abs().max()) == stats["E_absmax"] == 0.0
