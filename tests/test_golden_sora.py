"""SoRA against its authors' code (TsinghuaC3I/SoRA src/lora.py, src/sparse_optimizer.py;
fixture in tests/golden/sora/).

The gated branch (forward, gradients, delta weight, count) with the reference's weights
loaded, the init distributions, the gates' SparseAdamW trajectory (Adam step, then the
threshold step that zeroes |g| < 2 lambda in effect) and the lambda schedules.
"""

from __future__ import annotations

import math

import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, train
from tests.helpers import catalog, tiny_preset
from tests.support.golden import OneLinearToy, assert_close, frozen_toy, load_fixture

FX = load_fixture("sora")
CFG = FX.config


def sora(**params):
    entry = MethodEntry(method="sora", params={"targets": ["a"], **params})
    return C.instantiate(resolve_method(catalog(), entry))


def prepared_toy(**params):
    model = frozen_toy(OneLinearToy(CFG["d_in"], CFG["d_out"]))
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    prepared = sora(**params).prepare(model, ctx)
    return prepared, prepared.model.backbone.a


def loaded_layer():
    _, layer = prepared_toy(r=CFG["r"], alpha=CFG["alpha"])
    with torch.no_grad():
        layer.lora_A.copy_(FX["loaded.lora_A"])
        layer.lora_B.copy_(FX["loaded.lora_B"])
        layer.gate.copy_(FX["loaded.gate"].reshape(-1))
    return layer


def test_golden_sora_init_distributions():
    _, layer = prepared_toy(r=CFG["r"], alpha=CFG["alpha"])
    bound = 1 / math.sqrt(CFG["d_in"])  # kaiming_uniform(a=sqrt 5)
    for a in (layer.lora_A.detach(), FX["init.lora_A"]):
        assert a.shape == (CFG["r"], CFG["d_in"]) and float(a.abs().max()) <= bound
    assert float(layer.lora_B.detach().abs().max()) == 0.0 == float(FX["init.lora_B"].abs().max())
    assert layer.gate.shape == FX["init.gate"].reshape(-1).shape  # ~N(0, 1): (1, r) there
    assert layer.scaling == CFG["alpha"] / CFG["r"]


def test_golden_sora_branch_forward_gradients_and_delta_weight():
    layer = loaded_layer()
    y = layer.update(FX["x"])
    assert_close(y, FX["update"], "branch output")
    (y * FX["upstream"]).sum().backward()
    assert_close(layer.lora_A.grad, FX["grad.lora_A"], "grad A")
    assert_close(layer.lora_B.grad, FX["grad.lora_B"], "grad B")
    assert_close(layer.gate.grad, FX["grad.gate"].reshape(-1), "grad gate")
    assert_close(layer.delta_weight(), FX["delta_weight"], "delta weight")
    trainable = sum(p.numel() for p in (layer.lora_A, layer.lora_B, layer.gate))
    assert trainable == FX.meta["trainable_params"]


def gate_trajectory(lr: float, steps: int) -> list[torch.Tensor]:
    """The gates under the training driver (the method's optimiser, its after-step hook),
    with the fixture's gradients as the gates' only gradient (loss = sum(g * grad_t); the
    L1 term is off here, the reference's optimiser never sees it apart from the grads)."""
    gate0 = FX["prox.gate0"]
    params = {"r": len(gate0), "sparse_lambda": 0.0, "sparse_lambda_2": CFG["sparse_lambda_2"]}
    prepared, layer = prepared_toy(**params, prune_at_end=False)
    with torch.no_grad():
        layer.gate.copy_(gate0)
    grads = FX["prox.grads"] if lr else torch.zeros(steps, len(gate0))
    seen = []
    batches = iter({"grad": g, "labels": torch.zeros(1)} for g in grads)
    cfg = LoopConfig(steps=steps, lr=lr, schedule="constant")
    record = lambda step, loss: seen.append(layer.gate.detach().clone())  # noqa: E731
    train(prepared, batches, lambda m, b: (layer.gate * b["grad"]).sum(), cfg, record)
    return seen


def test_golden_sora_threshold_step_alone_zeroes_gates_below_two_lambda():
    for step, gate in enumerate(gate_trajectory(0.0, CFG["threshold_steps"]), start=1):
        assert_close(gate, FX[f"prox.threshold.step{step}"], f"threshold step {step}")


def test_golden_sora_gates_after_adam_and_proximal_steps():
    for step, gate in enumerate(gate_trajectory(CFG["lr"], CFG["adam_steps"]), start=1):
        expected = FX[f"prox.adam.step{step}"]
        assert torch.equal(gate == 0, expected == 0), f"step {step}: zeroed gates differ"
        assert_close(gate, expected, f"gates after step {step}")


def test_golden_sora_lambda_schedules():
    s = CFG["schedule"]
    for kind, expected in FX.meta["lambdas"].items():
        prepared, _ = prepared_toy(
            schedule=kind,
            sparse_lambda_2=s["sparse_lambda_2"],
            max_lambda=s["max_lambda"],
            lambda_num=s["lambda_num"],
        )
        assert_close(torch.tensor(prepared.hooks.lambdas), torch.tensor(expected), kind)
