"""SMoRA against the authors' srmole layer (tests/golden/smora, StyxXuan/smora@7e7ada1).

One linear layer (24 -> 16, r = 8 ranks, top-3, alpha 16) is adapted by peftbench's SMoRA,
the reference's tensors are loaded into it, and the gates, forward, gradients and the
load-balancing bias after a few training forwards are compared with the reference's.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from suite.methods.api import PrepareContext
from suite.registry import Catalog
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("smora")
CFG = FIX.config
# The bias moves by 1e-5 per forward: compare it far below the default tolerance.
BIAS_TOL = 1e-9


class _Model(nn.Module):
    def __init__(self, base: nn.Linear):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.proj = base


def _method(**overrides):
    entry = Catalog.discover().methods.get("smora")
    from suite.plugins import load_object

    cls = load_object(entry.spec.implementation, entry.path.parent)
    params = {
        "r": CFG["r"],
        "top_k": CFG["activate_r"],
        "alpha": CFG["lora_alpha"],
        "dropout": 0.0,
        "targets": "proj",
        **overrides,
    }
    return cls(cls.Params.model_validate(params))


def _prepare(base: nn.Linear, **overrides):
    ctx = PrepareContext(
        preset=SimpleNamespace(resolve_targets=lambda t: [t] if isinstance(t, str) else t),
        seed=0,
        device=torch.device("cpu"),
    )
    prepared = _method(**overrides).prepare(_Model(base), ctx)
    return prepared, prepared.model.backbone.proj


def _loaded(**overrides):
    base = nn.Linear(CFG["d_in"], CFG["d_out"])
    with torch.no_grad():
        base.weight.copy_(FIX["base.weight"])
        base.bias.copy_(FIX["base.bias"])
    prepared, layer = _prepare(base, **overrides)
    with torch.no_grad():
        layer.lora_A.weight.copy_(FIX["lora_A"])
        layer.lora_B.weight.copy_(FIX["lora_B"])
        layer.router.weight.copy_(FIX["router"])
    return prepared, layer


def _gates(layer, x: torch.Tensor) -> torch.Tensor:
    """(tokens, r) gate values, flattened as the reference's gating_output is."""
    return layer.gates(x).reshape(-1, CFG["r"])


def _grads(layer) -> dict[str, torch.Tensor]:
    out = {
        "lora_A": layer.lora_A.weight.grad,
        "lora_B": layer.lora_B.weight.grad,
        "router": layer.router.weight.grad,
        # The reference trains its lora_biases too (PEFT leaves them requires_grad).
        "bias": layer.route_bias.grad,
    }
    layer.zero_grad(set_to_none=True)
    return out


def test_golden_smora_initial_tensors():
    torch.manual_seed(CFG["seed"])  # the reference built its layer right after this
    _, layer = _prepare(nn.Linear(CFG["d_in"], CFG["d_out"]))
    assert_close(layer.lora_A.weight, FIX["init.lora_A"], "init lora_A")
    assert_close(layer.lora_B.weight, FIX["init.lora_B"], "init lora_B")
    assert_close(layer.router.weight, FIX["init.router"], "init router")
    assert_close(layer.route_bias, FIX["init.bias"], "init bias")


def test_golden_smora_trainable_count():
    prepared, _ = _loaded()
    count = sum(p.numel() for p in prepared.model.parameters() if p.requires_grad)
    assert count == FIX.meta["trainable_params"]


def test_golden_smora_gates_forward_and_gradients():
    _, layer = _loaded()
    layer.eval()
    x, upstream = FIX["x0"], FIX["upstream"]
    assert_close(_gates(layer, x), FIX["eval.gates"], "gates")
    y = layer(x)
    assert_close(y, FIX["eval.out"], "forward")
    (y * upstream).sum().backward()
    for name, grad in _grads(layer).items():
        assert grad is not None, f"{name} got no gradient"
        assert_close(grad, FIX[f"eval.grad.{name}"], f"grad {name}")


@pytest.mark.parametrize("prefix", ["train", "fast"])
def test_golden_smora_bias_after_training_forwards(prefix):
    rate = CFG["bias_update_rate"] if prefix == "train" else CFG["fast_bias_update_rate"]
    prepared, layer = _loaded(bias_update_rate=rate)
    for t in range(CFG["train_forwards"]):
        x = FIX[f"batch{t}"]
        assert_close(
            layer.route_bias, FIX[f"{prefix}{t}.bias_before"], f"bias before {t}", BIAS_TOL
        )
        layer.eval()  # the gates this training forward uses (no bias update in eval)
        assert_close(_gates(layer, x), FIX[f"{prefix}{t}.gates"], f"gates {t}")
        layer.train()
        assert_close(layer(x), FIX[f"{prefix}{t}.out"], f"forward {t}")
        prepared.hooks.after_optimizer_step(t)  # the loop's call after each step
        assert_close(layer.route_bias, FIX[f"{prefix}{t}.bias_after"], f"bias after {t}", BIAS_TOL)
    x, upstream = FIX["x0"], FIX["upstream"]
    layer.eval()
    assert_close(_gates(layer, x), FIX[f"{prefix}_last.gates"], "last gates")
    layer.train()
    y = layer(x)
    assert_close(y, FIX[f"{prefix}_last.out"], "last forward")
    (y * upstream).sum().backward()
    prepared.hooks.after_optimizer_step(CFG["train_forwards"])
    assert_close(layer.route_bias, FIX[f"{prefix}_last.bias_after"], "last bias", BIAS_TOL)
    for name, grad in _grads(layer).items():
        assert grad is not None, f"{name} got no gradient"
        assert_close(grad, FIX[f"{prefix}_last.grad.{name}"], f"last grad {name}")
