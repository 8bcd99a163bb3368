"""The optimiser methods (GaLore, DCT-AdamW, FRUGAL) through the one training driver:
their own optimiser is what steps, with the driver's per-group schedule, fp32 master
weights on a bf16 base, and `Trainer.restart_optimizer`; every row's optimiser-state
bytes, exact for AdamW; and their hyperparameters' bad inputs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from suite import conformance as C
from suite.cells import expand, resolve_method
from suite.methods.api import StepHooks
from suite.plugins import load_object
from suite.registry import Catalog
from suite.scheduler.local import LocalExecutor
from suite.specs.matrix import MatrixSpec, MethodEntry
from suite.train.loop import LoopConfig, TrainingDriver, schedule_factor, train
from suite.train.measure import optimizer_state_bytes
from tests.helpers import bench_from_backbone, catalog, tiny_bench, tiny_bert_backbone, tiny_preset

OPTIMIZER_METHODS = ["galore", "dct-adamw", "frugal"]
CLASSES = {"galore": "GaLoreAdamW", "dct-adamw": "DCTAdamW", "frugal": "FrugalAdamW"}


def method(name: str, **params):
    return C.instantiate(resolve_method(catalog(), MethodEntry(method=name, params=params)))


def bf16_bench():
    return bench_from_backbone(tiny_bert_backbone().to(torch.bfloat16), tiny_preset(), vocab=100)


def _trainable(model) -> tuple[int, int]:
    tensors = [p for p in model.parameters() if p.requires_grad]
    return sum(p.numel() for p in tensors), len(tensors)


@pytest.mark.parametrize("bench", [tiny_bench, bf16_bench], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["lora", "full"])
def test_adamw_state_is_two_fp32_moments_per_trainable_parameter(name, bench):
    """torch's AdamW keeps exp_avg and exp_avg_sq (fp32: the masters on a bf16 base) and
    a step counter that torch stores as a 0-d float32 tensor: 4 more bytes per tensor."""
    b = bench()
    prepared = C.prepare(method(name), b)
    numel, n_tensors = _trainable(prepared.model)
    cfg = LoopConfig(steps=2, lr=1e-3, schedule="constant")
    stats = train(prepared, itertools.cycle(b.batches), C.loss_fn, cfg)
    assert stats.optimizer_state_bytes == 2 * 4 * numel + 4 * n_tensors


def test_state_bytes_count_extra_tensors_once():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    shared = torch.zeros(5, dtype=torch.float64)
    opt.extra_state_tensors = lambda: [shared, shared]
    assert optimizer_state_bytes(opt) == 5 * 8


def _driver(name: str, bench=tiny_bench, steps: int = 4, **cfg):
    b = bench()
    prepared = C.prepare(method(name), b)
    return prepared, TrainingDriver(prepared, LoopConfig(steps=steps, lr=1e-3, **cfg)), b


@pytest.mark.parametrize("name", OPTIMIZER_METHODS)
def test_the_method_brings_its_own_optimizer_and_every_weight_trains(name):
    prepared, driver, _ = _driver(name)
    assert type(driver.optimizer).__name__ == CLASSES[name]
    numel, _ = _trainable(prepared.model)
    assert numel == sum(p.numel() for p in prepared.model.parameters())
    stepped = sum(p.numel() for g in driver.optimizer.param_groups for p in g["params"])
    assert stepped == numel
    projected = [g for g in driver.optimizer.param_groups if "rank" in g or g.get("frugal")]
    # The preset's attention and mlp weights: 2 layers x (4 attention + 2 mlp).
    assert len(projected) == 1 and len(projected[0]["params"]) == 12


@pytest.mark.parametrize("name", OPTIMIZER_METHODS)
def test_bf16_base_steps_fp32_masters_and_keeps_fp32_state(name):
    prepared, driver, b = _driver(name, bench=bf16_bench)
    for step in range(2):
        prepared.model.zero_grad(set_to_none=True)
        C.loss_fn(prepared.model, b.batches[step % 2]).backward()
        driver.optimizer_step()
    assert {p.dtype for g in driver.optimizer.param_groups for p in g["params"]} == {torch.float32}
    dtypes = {
        t.dtype
        for s in driver.optimizer.state.values()
        for t in s.values()
        if torch.is_tensor(t) and t.is_floating_point()
    }
    assert dtypes == {torch.float32}
    assert prepared.model.backbone.encoder.layer[0].attention.self.query.weight.dtype == (
        torch.bfloat16
    )


def test_frugal_state_free_update_follows_the_drivers_schedule():
    """Blocks at density 0: every projected tensor takes -lr_t x inactive_lr_scale x
    sign(g), so each step's change is the schedule's lr for that step, exactly."""
    b = tiny_bench()
    prepared = C.prepare(method("frugal", projection="block", density=0.0), b)
    cfg = LoopConfig(steps=6, lr=1e-2, warmup_ratio=0.5, schedule="linear")
    driver = TrainingDriver(prepared, cfg)
    weight = prepared.model.backbone.encoder.layer[0].attention.self.query.weight
    for step in range(cfg.steps):
        before = weight.detach().clone()
        prepared.model.zero_grad(set_to_none=True)
        C.loss_fn(prepared.model, b.batches[step % 2]).backward()
        sign = weight.grad.sign()
        driver.optimizer_step()
        lr = 1e-2 * schedule_factor(step, cfg.warmup_steps, cfg.steps, "linear")
        expected = before - lr * 0.1 * sign
        assert torch.allclose(weight.detach(), expected, atol=1e-7), step


class Restart(StepHooks):
    def __init__(self, at: int):
        self.at, self.trainer, self.optimizers = at, None, []

    def bind_trainer(self, trainer):
        self.trainer = trainer
        self.optimizers.append(trainer.optimizer)

    def after_optimizer_step(self, step):
        if step == self.at:
            self.optimizers.append(self.trainer.restart_optimizer())


@pytest.mark.parametrize("name", OPTIMIZER_METHODS)
def test_restart_optimizer_gives_a_fresh_optimizer_of_the_method(name):
    b = tiny_bench()
    prepared = C.prepare(method(name), b)
    hooks = Restart(at=2)
    prepared.hooks = hooks
    stats = train(prepared, itertools.cycle(b.batches), C.loss_fn, LoopConfig(steps=5, lr=1e-3))
    first, second = hooks.optimizers
    assert second is not first and type(second).__name__ == CLASSES[name]
    assert all(torch.isfinite(torch.tensor(stats.losses)))
    # The fresh optimiser has taken the 2 steps after the restart only.
    counts = {s["step"] for s in second.state.values() if "step" in s}
    if name == "dct-adamw":
        counts = {second.steps}
    assert counts and max(int(c) for c in counts) <= 2
    assert stats.optimizer_state_bytes == optimizer_state_bytes(second)


def _projected_state_bytes(opt) -> dict[tuple[int, int], int]:
    group = next(g for g in opt.param_groups if "rank" in g or g.get("frugal"))
    out = {}
    for p in group["params"]:
        state = opt.state[p]
        out[tuple(p.shape)] = sum(
            t.numel() * t.element_size() for t in state.values() if torch.is_tensor(t)
        )
    return out


def test_galore_state_is_the_projected_moments_and_projection():
    prepared, driver, b = _driver("galore", steps=1)
    C.loss_fn(prepared.model, b.batches[0]).backward()
    driver.optimizer_step()
    r = 4
    for (m, n), nbytes in _projected_state_bytes(driver.optimizer).items():
        low = m * r if m >= n else r * n  # the moments' shape
        proj = r * n if m >= n else m * r
        assert nbytes == 4 * (2 * low + proj), (m, n)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="rank 32 is not below the smaller side"):
        C.prepare(method("galore", rank=32), tiny_bench())
    with pytest.raises(ValueError, match="dct-adamw: rank 40"):
        C.prepare(method("dct-adamw", rank=40), tiny_bench())
    with pytest.raises(ValidationError, match="update_proj_gap"):
        cls = load_object("impl.py:GaLore", Path(__file__).parents[1] / "methods" / "galore")
        cls.Params.model_validate({"rank": 4, "update_proj_gap": 0})
    with pytest.raises(ValidationError, match="density"):
        method("frugal", density=1.5)
    with pytest.raises(ValueError, match="no module matches"):
        C.prepare(method("frugal", targets=["nothing_here"]), tiny_bench())


def test_a_cell_row_records_optimizer_state_bytes(tiny_plugins):
    cat = Catalog.discover([tiny_plugins])
    matrix = MatrixSpec(
        name="o", models=["tiny-bert"], methods=["galore", "full"], tasks=["drug-condition"],
        seeds=[0], budget={"max_steps": 2, "batch_size": 4},
    )  # fmt: skip
    reports = {}
    LocalExecutor()(
        expand(matrix, cat), lambda cell, report: reports.__setitem__(cell.method.label, report)
    )
    galore, full = reports["galore"].measured, reports["full"].measured
    assert galore.status == full.status == "ok", (galore.error, full.error)
    g, f = galore.measurements, full.measurements
    # AdamW keeps state only for tensors that received a gradient: the tiny BERT's pooler
    # (unused under mean pooling) has none, so the row is below 8 bytes per parameter.
    assert 0 < f.optimizer_state_bytes <= 8 * f.trainable_params + 4 * 64
    assert 0 < g.optimizer_state_bytes < f.optimizer_state_bytes
