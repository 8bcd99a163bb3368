"""The method conformance suite: checks every method must pass, on any small model.

Every registered method joins by being registered: its `method.yaml` may carry a
`conformance:` block (test-sized params, and which claims it does not make, with a
note). `tests/test_conformance.py` runs these checks for every method of the catalogue,
and `peftbench validate --conformance DIR` runs them for a user's method folder.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from suite.cells import ResolvedMethod
from suite.methods.api import Method, PrepareContext, Prepared, TrainingPlan
from suite.methods.targets import find_targets
from suite.plugins import load_object
from suite.specs.model import ModelPreset
from suite.train.loop import LoopConfig, train
from suite.train.prepare import prepare_model

MERGE_TOL = 1e-5


@dataclass
class Bench:
    """A small task model, its preset, and fixed batches to check a method on."""

    preset: ModelPreset
    build: Callable[[int], torch.nn.Module]  # seed -> fresh TaskModel (head trainable)
    batches: list[dict]


def instantiate(method: ResolvedMethod, overrides: dict | None = None) -> Method:
    cls = load_object(method.implementation, method.impl_dir)
    return cls(cls.Params.model_validate({**method.params, **(overrides or {})}))


def prepare(
    method: Method, bench: Bench, seed: int = 0, training: TrainingPlan | None = None
) -> Prepared:
    """The method applied to a fresh bench model, through the runner's own path."""
    torch.manual_seed(seed)
    model = bench.build(seed)
    ctx = PrepareContext(
        preset=bench.preset,
        seed=seed,
        device=torch.device("cpu"),
        train_batches=lambda: iter(bench.batches * 100),
        loss_fn=loss_fn,
        training=training,
        # A method with an outer loop (Method.train_holdout) gets held-out batches; the
        # bench has no split, so they are its batches in reverse order (plumbing only).
        holdout_batches=(lambda: iter(bench.batches[::-1] * 100))
        if method.train_holdout()
        else None,
    )
    prepared = prepare_model(method, model, ctx).prepared
    prepared.model.eval()
    return prepared


def loss_fn(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return F.cross_entropy(model(**batch).float(), batch["labels"])


@torch.no_grad()
def outputs(model: torch.nn.Module, bench: Bench) -> torch.Tensor:
    return torch.cat([model(**b) for b in bench.batches])


def target_shapes(model: torch.nn.Module, bench: Bench, targets) -> list[tuple[int, int]]:
    patterns = bench.preset.resolve_targets(targets)
    return [tuple(m.weight.shape) for _, m in find_targets(model.backbone, patterns)]


def adapter_param_count(prepared: Prepared) -> int:
    model = prepared.model
    head = sum(p.numel() for p in model.head.parameters() if p.requires_grad)
    return sum(p.numel() for p in model.parameters() if p.requires_grad) - head


def check_identity(method: Method, bench: Bench) -> float:
    """Max |output(adapted at init) - output(base)|."""
    base = outputs(bench.build(0).eval(), bench)
    adapted = outputs(prepare(method, bench).model, bench)
    return float((adapted - base).abs().max())


def check_merge(prepared: Prepared, bench: Bench) -> float:
    """Max |merged - unmerged| after perturbing the trainable tensors away from init."""
    perturb(prepared.model)
    unmerged = outputs(prepared.model, bench)
    prepared.merge()
    merged = outputs(prepared.model, bench)
    if prepared.unmerge is not None:
        prepared.unmerge()
        restored = outputs(prepared.model, bench)
        assert torch.allclose(restored, unmerged, atol=MERGE_TOL), "unmerge did not restore"
    return float((merged - unmerged).abs().max())


@torch.no_grad()
def perturb(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(123)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.05)


def gradient_leaks(prepared: Prepared, bench: Bench) -> tuple[set[str], set[str]]:
    """(frozen tensors that got a gradient, trainable tensors that got none)."""
    model = prepared.model
    model.train()
    perturb(model)  # zero-initialised factors would otherwise starve their partners
    model.zero_grad(set_to_none=True)
    loss_fn(model, bench.batches[0]).backward()
    leaked = {n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None}
    starved = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    model.eval()
    return leaked, starved


def check_reload(method: Method, bench: Bench) -> float:
    """Train-like change, save the adapter as safetensors, load it into a fresh model."""
    from safetensors.torch import load, save

    source = prepare(method, bench, seed=0)
    perturb(source.model)
    blob = save({k: v.contiguous() for k, v in source.adapter_state().items()})
    target = prepare(method, bench, seed=0)
    target.load_adapter_state(load(io.BytesIO(blob).getvalue()))
    return float((outputs(source.model, bench) - outputs(target.model, bench)).abs().max())


def check_training(
    method: Method, bench: Bench, steps: int = 30, lr: float = 1e-2
) -> tuple[float, float]:
    """(first loss, last loss) over `steps` constant-lr steps of the training driver on
    one small batch."""
    cfg = LoopConfig(steps=steps, lr=lr, schedule="constant")
    prepared = prepare(method, bench, training=TrainingPlan(lr, steps, 0))
    stats = train(prepared, itertools.repeat(bench.batches[0]), loss_fn, cfg)
    return stats.losses[0], stats.losses[-1]
