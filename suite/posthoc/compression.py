"""What compress methods get from the runner: targets, calibration, retraining, storage.

Calibration is a fixed slice of the source task's training split (the split training
read, validation already carved out of it; never validation or test): `examples`
examples of a permutation seeded by the stage's calibration seed, in fixed batches.

Stored size counts each parameter as it would be kept: dense, or for weights a method
left sparse, in compact form: an N:M weight as its kept values plus ceil(log2 C(m, n))
bits of index per group of m (2:4: 3 bits), an unstructured one as its nonzero values
plus the cheaper of a bitmask (1 bit per entry) or int32 indices.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from suite.methods.api import Prepared, StepHooks
from suite.methods.targets import find_targets
from suite.posthoc.api import CompressContext
from suite.posthoc.calibrate import Calibration
from suite.posthoc.cells import PosthocCell
from suite.posthoc.inputs import LoadedInput, training_slice
from suite.train.batches import train_batches
from suite.train.evaluate import task_loss
from suite.train.loop import LoopConfig, TrainStats, planned_steps, train


def calibration_slice(source: LoadedInput, cell: PosthocCell) -> list[dict]:
    """The calibration batches: a fixed slice of the training split, on the device."""
    spec = cell.calibration
    assert spec is not None, "compress cells carry their stage's calibration spec"
    return training_slice(source, spec.examples, spec.seed, spec.batch_size)


def compress_context(cell: PosthocCell, source: LoadedInput, model: nn.Module) -> CompressContext:
    preset = source.cell.model

    def resolve(targets):
        return find_targets(model.backbone, preset.resolve_targets(targets))

    calibration = Calibration(calibration_slice(source, cell), run=lambda b: model(**b))
    return CompressContext(
        preset=preset,
        seed=cell.seed,
        device=source.setup.device,
        resolve=resolve,
        calibration=calibration,
        budget=cell.budget,
        retrain=_retrainer(cell, source) if cell.budget is not None else None,
    )


class MaskedRetraining(StepHooks):
    """Retraining under fixed masks: pruned weights get no gradient and stay exactly zero
    after every optimiser step (AdamW's weight decay and moments cannot revive them)."""

    def __init__(self, masks: dict[nn.Parameter, torch.Tensor]):
        self.masks = masks

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        for p, mask in self.masks.items():
            if p.grad is not None:
                p.grad[mask] = 0

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        for p, mask in self.masks.items():
            p[mask] = 0


def _retrainer(cell: PosthocCell, source: LoadedInput):
    """retrain(model, seed, lr, weight_decay, masks) -> TrainStats: one run of the stage's
    budget on the source task's training split, every weight trainable, under `masks`."""
    budget = cell.budget
    setup = source.setup
    steps = planned_steps(
        len(setup.encoded["train"]), budget.batch_size, budget.epochs, budget.max_steps,
        budget.tokens, source.cell.task.max_length,
    )  # fmt: skip

    def retrain(model, seed: int, lr: float, weight_decay: float, masks) -> TrainStats:
        for p in model.parameters():
            p.requires_grad_(True)
        stream = train_batches(
            setup.encoded["train"], budget.batch_size, setup.pad, setup.collate, seed
        )
        batches = ({k: v.to(setup.device) for k, v in b.items()} for b in stream)
        cfg = LoopConfig(
            steps=steps, lr=lr, weight_decay=weight_decay,
            warmup_ratio=budget.warmup_ratio, grad_clip=budget.grad_clip,
        )  # fmt: skip
        stats = train(Prepared(model=model, hooks=MaskedRetraining(masks)), batches,
                      task_loss(source.cell.task), cfg)  # fmt: skip
        model.eval()
        return stats

    retrain.steps = steps  # type: ignore[attr-defined]
    return retrain


def compact_bytes(weight: torch.Tensor, pattern: tuple[int, int] | None) -> int:
    """Bytes of a sparse weight kept compactly (see the module doc)."""
    size = weight.element_size()
    if pattern is not None:
        n, m = pattern
        groups = weight.numel() // m
        return groups * n * size + math.ceil(groups * math.ceil(math.log2(math.comb(m, n))) / 8)
    nonzero = int((weight != 0).sum())
    return nonzero * size + min(math.ceil(weight.numel() / 8), nonzero * 4)


def pattern_holds(weight: torch.Tensor, pattern: tuple[int, int]) -> bool:
    """At most n nonzeros in every group of m consecutive inputs of every row."""
    n, m = pattern
    groups = (weight.reshape(weight.shape[0], -1, m) != 0).sum(dim=-1)
    return bool((groups <= n).all())


def storage(model: nn.Module, sparse: dict[str, tuple[int, int] | None]) -> tuple[int, bool | None]:
    """(stored bytes of the whole model, whether every declared N:M pattern holds)."""
    params = dict(model.named_parameters())
    unknown = sorted(set(sparse) - set(params))
    if unknown:
        raise ValueError(f"the method reports sparse parameters the model lacks: {unknown[:3]}")
    total = 0
    checks = []
    for name, p in params.items():
        if name in sparse:
            total += compact_bytes(p.detach(), sparse[name])
            if sparse[name] is not None:
                checks.append(pattern_holds(p.detach(), sparse[name]))
        else:
            total += p.numel() * p.element_size()
    return total, (all(checks) if checks else None)
