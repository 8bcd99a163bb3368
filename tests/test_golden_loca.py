"""LoCA against the official kernel (tests/golden/loca: TL-UESTC/LoCA's IdctWithIndexGrad
and dct_utils as vendored byte-identically by SDMuhsin/SCoRA@8c2460c / @aebf637).

One 24 -> 16 layer (k = 10, scale 2) is adapted by peftbench's LoCA, the reference's
tensors are loaded into it, and the DCT matrices, delta weight, forward and both
gradients, the alternating schedule's states, and 40 AdamW steps at two learning rates
(through peftbench's own training driver) are compared with the reference's.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from suite.methods.api import PrepareContext, TrainingPlan
from suite.plugins import load_object
from suite.registry import Catalog
from suite.train.loop import LoopConfig, train
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("loca")
CFG = FIX.config


class _Model(nn.Module):
    def __init__(self, base: nn.Linear):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.proj = base

    def forward(self, x):
        return self.backbone.proj(x)


def _cls():
    entry = Catalog.discover().methods.get("loca")
    return load_object(entry.spec.implementation, entry.path.parent)


def _prepare(training: TrainingPlan | None = None, **overrides):
    cls = _cls()
    params = {"n_frequency": CFG["n_frequency"], "alpha": CFG["scale"], "targets": "proj"}
    method = cls(cls.Params.model_validate({**params, **overrides}))
    base = nn.Linear(CFG["d_in"], CFG["d_out"])
    with torch.no_grad():
        base.weight.copy_(FIX["base.weight"])
        base.bias.copy_(FIX["base.bias"])
    ctx = PrepareContext(
        preset=SimpleNamespace(resolve_targets=lambda t: [t] if isinstance(t, str) else t),
        seed=0,
        device=torch.device("cpu"),
        training=training,
    )
    prepared = method.prepare(_Model(base), ctx)
    return prepared, prepared.model.backbone.proj


def _loaded(spectrum: torch.Tensor, locations: torch.Tensor, **overrides):
    prepared, layer = _prepare(**overrides)
    with torch.no_grad():
        layer.loca_coefficients.copy_(spectrum)
        layer.loca_locations.copy_(locations)
    return prepared, layer


def test_golden_loca_dct_matrices():
    dct = __import__(_cls().__module__, fromlist=["dct_matrix"]).dct_matrix
    for n in (CFG["d_out"], CFG["d_in"]):
        assert_close(dct(n, torch.device("cpu"), torch.float32), FIX[f"dct_{n}"], f"C_{n}")


def test_golden_loca_delta_forward_and_both_gradients():
    _, layer = _loaded(FIX["spectrum"], FIX["locations"])
    assert_close(layer.delta_weight(), FIX["delta_weight"], "delta weight")
    out = layer(FIX["x"])
    assert_close(out, FIX["output"], "forward")
    (out * FIX["grad_out"]).sum().backward()
    assert_close(layer.loca_coefficients.grad, FIX["grad_spectrum"], "coefficient gradient")
    assert_close(layer.loca_locations.grad, FIX["grad_locations"], "location gradient")
    # The location above the 0.999 clamp gets no row gradient (autograd through clamp).
    assert float(layer.loca_locations.grad[0, 4]) == 0.0


def test_golden_loca_coefficient_phase_gradient():
    _, layer = _loaded(FIX["spectrum"], FIX["locations"])
    layer.set_phase(locations=False)
    (layer(FIX["x"]) * FIX["grad_out"]).sum().backward()
    assert_close(
        layer.loca_coefficients.grad, FIX["grad_spectrum_coefficient_phase"], "coefficients"
    )
    assert layer.loca_locations.grad is None


def test_golden_loca_schedule_states_over_steps():
    learn = CFG["schedule_learn_location_iter"]
    prepared, layer = _prepare(learn_location_iter=learn)
    hooks = prepared.hooks
    hooks.bind_trainer(SimpleNamespace(total_steps=CFG["schedule_steps"], optimizer=None))
    hooks.on_train_start(CFG["schedule_steps"])
    states = []
    for step in range(CFG["schedule_steps"]):
        states.append([layer.loca_coefficients.requires_grad, layer.loca_locations.requires_grad])
        hooks.after_optimizer_step(step)
    assert torch.equal(torch.tensor(states, dtype=torch.int64), FIX["schedule_states"])
    # B_s from the share of the run when no step count is given: 10% of 100 steps.
    prepared, _ = _prepare()
    prepared.hooks.bind_trainer(SimpleNamespace(total_steps=100, optimizer=None))
    assert prepared.hooks.learn_until == 10


def test_golden_loca_training_with_its_two_learning_rates():
    steps, lr = CFG["train_steps"], CFG["lr_coefficients"]
    plan = TrainingPlan(lr=lr, steps=steps, warmup_steps=0)
    prepared, layer = _loaded(
        torch.zeros(CFG["n_frequency"]),
        FIX["train_locations_init"],
        training=plan,
        location_lr=CFG["lr_locations"],
        learn_location_iter=CFG["train_learn_location_iter"],
    )
    batches = [
        {"x": x, "t": t, "labels": torch.zeros(x.shape[0])}
        for x, t in zip(FIX["train_x"], FIX["train_targets"], strict=True)
    ]
    cfg = LoopConfig(steps=steps, lr=lr, schedule="constant")
    train(prepared, iter(batches), lambda model, b: (model(b["x"]) * b["t"]).sum(), cfg)
    assert_close(layer.loca_coefficients, FIX["trained_spectrum"], "coefficients after training")
    assert_close(layer.loca_locations, FIX["trained_locations"], "locations after training")


def test_golden_loca_counts():
    prepared, layer = _prepare()
    trainable = sum(p.numel() for p in prepared.model.parameters() if p.requires_grad)
    assert trainable == FIX.meta["trainable_coefficients"] + FIX.meta["optimised_locations"]
    assert prepared.trainable_count() == FIX.meta["trainable_coefficients"]
