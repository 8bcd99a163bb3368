"""The task-boundary hook: the sequential strategy calls it before every task but the
first (generic: no method is named), and the track's two methods (CoDyRA, MoRAM) keep
what a task learned across it while the next task trains fresh ranks."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.continual import strategies
from suite.methods.api import Prepared, StepHooks, TrainingPlan
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, train
from tests.helpers import catalog, tiny_bench


class _Recorder(StepHooks):
    def __init__(self, log: list):
        self.log = log

    def on_task_boundary(self) -> None:
        self.log.append("boundary")


def test_sequential_calls_the_boundary_hook_before_every_task_but_the_first(monkeypatch):
    log: list = []
    model = torch.nn.Module()
    model.head = torch.nn.Linear(2, 2)
    ready = SimpleNamespace(prepared=Prepared(model=model, hooks=_Recorder(log)))
    monkeypatch.setattr("suite.train.prepare.prepare", lambda _cell, _setup: ready)
    heads = [torch.nn.Linear(2, 2) for _ in range(3)]

    def train_stage(i, got):
        assert got is ready and model.head is heads[i]
        log.append(f"train {i}")
        return {}

    stages = SimpleNamespace(
        cell=SimpleNamespace(stage=lambda i: i), setups=[None] * 3, heads=heads,
        train=train_stage,
    )  # fmt: skip
    seq = strategies.Sequential(stages)
    for i in range(3):
        seq.train(i)
    assert log == ["train 0", "boundary", "train 1", "boundary", "train 2"]


def _method(name: str, **params):
    cat = catalog()
    method = resolve_method(cat, MethodEntry(method=name))
    return C.instantiate(method, {"r": 4, **params})


def _task(prepared, bench, batch: int, steps: int = 4):
    cfg = LoopConfig(steps=steps, lr=1e-2, schedule="constant")
    stream = itertools.repeat(bench.batches[batch])
    return train(prepared, stream, C.loss_fn, cfg)


def _adapters(model, cls_name: str):
    return [m for m in model.modules() if type(m).__name__ == cls_name]


def test_codyra_merges_the_task_into_w_at_the_boundary_and_keeps_its_function():
    bench = tiny_bench()
    prepared = C.prepare(_method("codyra", dense_fraction=0.0, max_kappa=0.5, lambda_num=2),
                         bench, training=TrainingPlan(1e-2, 4, 0))  # fmt: skip
    _task(prepared, bench, 0)
    layers = _adapters(prepared.model, "CoDyRALinear")
    assert any((m.gate == 0).any() for m in layers), "the threshold switched no rank off"
    prepared.model.eval()  # no dropout: outputs comparable across the boundary
    before = C.outputs(prepared.model, bench)
    trained_a = [m.lora_A for m in layers]
    prepared.hooks.on_task_boundary()
    # The gated update now lives in W: the function is unchanged, fresh ranks train.
    assert torch.allclose(C.outputs(prepared.model, bench), before, atol=1e-5)
    assert all(
        m.lora_A is not a and not m.lora_B.any() for m, a in zip(layers, trained_a, strict=True)
    )
    assert all(not m.base.weight.requires_grad for m in layers)
    stats = _task(prepared, bench, 1)
    assert stats.steps == 4 and all(m.lora_B.any() for m in layers)


def test_moram_freezes_the_task_s_experts_into_the_pool_and_trains_fresh_ones():
    bench = tiny_bench()
    prepared = C.prepare(_method("moram"), bench, training=TrainingPlan(1e-2, 4, 0))
    _task(prepared, bench, 0)
    layers = _adapters(prepared.model, "MoRAMLinear")
    trained = [(m.lora_A.detach().clone(), m.lora_B.detach().clone()) for m in layers]
    counted = C.adapter_param_count(prepared)
    prepared.hooks.on_task_boundary()
    for m, (a, b) in zip(layers, trained, strict=True):
        assert torch.equal(m.old_A, a) and torch.equal(m.old_B, b) and m.experts == 8
    _task(prepared, bench, 1)
    for m, (a, b) in zip(layers, trained, strict=True):
        assert torch.equal(m.old_A, a) and torch.equal(m.old_B, b)  # frozen while task 2 trains
        assert m.lora_B.any()
    assert C.adapter_param_count(prepared) == counted  # the pool does not train
