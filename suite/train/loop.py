"""The generic training loop: AdamW, linear warmup and decay, clipping, method hooks."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from suite.methods.api import Prepared


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the cell stops early."""


@dataclass
class TrainStats:
    steps: int = 0
    samples: int = 0
    wall_s: float = 0.0
    step_times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    @property
    def step_time_median(self) -> float:
        # The first step pays one-off costs (allocator warm-up, lazy init); leave it out.
        times = self.step_times[1:] or self.step_times
        return statistics.median(times) if times else float("nan")

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s else float("nan")

    @property
    def final_loss(self) -> float:
        tail = self.losses[-10:]
        return sum(tail) / len(tail) if tail else float("nan")


def total_steps(n_train: int, batch_size: int, epochs: float, max_steps: int | None) -> int:
    per_epoch = max(n_train // batch_size, 1)
    steps = max(int(math.ceil(per_epoch * epochs)), 1)
    return min(steps, max_steps) if max_steps else steps


def make_optimizer(prepared: Prepared, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    named = [(n, p) for n, p in prepared.model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the method left no trainable parameters")
    if prepared.make_optimizer is not None:
        return prepared.make_optimizer(named, lr, weight_decay)
    # No weight decay on biases and norms, as is standard for transformer fine-tuning.
    decay = [p for n, p in named if p.ndim >= 2]
    no_decay = [p for n, p in named if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


class _GroupAdoptingLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """LambdaLR that also schedules param groups a hook adds mid-training.

    Methods that grow (IncreLoRA adds rank) register new tensors with
    `optimizer.add_param_group` from a hook; plain LambdaLR would fail on the extra group.
    A new group follows the same schedule from its own initial lr.
    """

    def get_lr(self):
        for group in self.optimizer.param_groups[len(self.base_lrs) :]:
            self.base_lrs.append(group.setdefault("initial_lr", group["lr"]))
            self.lr_lambdas.append(self.lr_lambdas[0])
        return super().get_lr()


def linear_schedule(optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return _GroupAdoptingLambdaLR(optimizer, factor)


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    grad_clip: float


def train(
    prepared: Prepared,
    batches: Iterator[dict],
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    cfg: LoopConfig,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainStats:
    """Run `cfg.steps` optimiser steps; raise NonFiniteLoss on NaN/inf."""
    model, hooks = prepared.model, prepared.hooks
    model.train()
    optimizer = make_optimizer(prepared, cfg.lr, cfg.weight_decay)
    scheduler = linear_schedule(optimizer, int(cfg.warmup_ratio * cfg.steps), cfg.steps)
    stats = TrainStats()
    hooks.bind_optimizer(optimizer)
    hooks.on_train_start(cfg.steps)
    start = time.perf_counter()
    for step in range(cfg.steps):
        t0 = time.perf_counter()
        batch = next(batches)
        loss = loss_fn(model, batch)
        extra = hooks.extra_loss()
        total = loss + extra if extra is not None else loss
        if not torch.isfinite(total):
            raise NonFiniteLoss(f"loss became {total.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        hooks.after_backward(step)
        if cfg.grad_clip:
            # Read the groups each step: a hook may have added parameters.
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        hooks.after_optimizer_step(step)
        stats.step_times.append(time.perf_counter() - t0)
        stats.losses.append(float(loss.detach()))
        stats.steps += 1
        stats.samples += int(batch["labels"].shape[0])
        if on_step:
            on_step(step, stats.losses[-1])
    hooks.on_train_end()
    stats.wall_s = time.perf_counter() - start
    return stats
