"""The one training-step driver: AdamW (or the method's own optimiser), linear warmup and
decay per parameter group, clipping, fp32 master weights, and the method's hooks.

The runner, the conformance checks and the tests all train through `train`, so a method
is exercised the same way everywhere.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from suite.methods.api import Prepared
from suite.train.measure import optimizer_state_bytes
from suite.train.precision import MasterWeights


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the cell stops early."""


@dataclass
class TrainStats:
    steps: int = 0
    samples: int = 0
    wall_s: float = 0.0
    step_times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    # Bytes of the optimiser's state tensors at the end of training (measure.py).
    optimizer_state_bytes: int | None = None

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


def planned_steps(
    n_train: int,
    batch_size: int,
    epochs: float,
    max_steps: int | None,
    tokens: int | None = None,
    seq_len: int = 1,
) -> int:
    """Optimiser steps of a budget: `tokens // (batch_size x seq_len)` when it is given in
    tokens (pretraining sequences are exactly seq_len long), else epochs over the training
    split; `max_steps` caps either."""
    if tokens is None:
        return total_steps(n_train, batch_size, epochs, max_steps)
    steps = max(tokens // (batch_size * seq_len), 1)
    return min(steps, max_steps) if max_steps else steps


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    lr: float
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    grad_clip: float = 0.0
    # "constant" for the conformance checks (a short fixed-lr run); cells use "linear";
    # "hf-linear" is Hugging Face's get_linear_schedule_with_warmup (warmup from 0), for
    # reproducing a reference trainer.
    schedule: Literal["linear", "constant", "hf-linear"] = "linear"

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup_ratio * self.steps)


def parameter_groups(
    named: list[tuple[str, torch.nn.Parameter]],
    lr: float,
    weight_decay: float,
    lr_scale: Callable[[str], float] | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and norms (standard for transformer
    fine-tuning), and one group per learning-rate multiplier the method asks for."""
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, p in named:
        decays = p.ndim >= 2
        scale = lr_scale(name) if lr_scale else 1.0
        group = groups.setdefault(
            (decays, scale),
            {"params": [], "lr": lr * scale, "weight_decay": weight_decay if decays else 0.0},
        )
        group["params"].append(p)
    # Decaying groups first, as the optimiser always had them (same state order).
    return [groups[k] for k in sorted(groups, key=lambda k: (not k[0], k[1]))]


def make_optimizer(
    prepared: Prepared, named: list[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    if not named:
        raise ValueError("the method left no trainable parameters")
    if prepared.make_optimizer is not None:
        return prepared.make_optimizer(named, lr, weight_decay)
    return torch.optim.AdamW(parameter_groups(named, lr, weight_decay, prepared.lr_scale), lr=lr)


def schedule_factor(step: int, warmup: int, total: int, kind: str = "linear") -> float:
    """The lr multiplier at `step` (0-based, counted from the schedule's start): linear
    warmup over `warmup` steps, then linear decay to zero at `total`.

    "linear" warms up as (step + 1) / (warmup + 1), so the first step already trains;
    "hf-linear" as step / warmup (Hugging Face's, and IncreLoRA's Multi_LambdaLR's).
    Before its start (step < 0) a schedule gives 0."""
    if kind == "constant":
        return 1.0
    if step < 0:
        return 0.0
    if step < warmup:
        return (step + 1) / (warmup + 1) if kind == "linear" else step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


class Schedule:
    """Per-group linear warmup + decay. Each group keeps its own start, warmup and length,
    so a group added mid-run (IncreLoRA's new ranks) or a restarted optimiser (LT-SFT's
    second phase) gets a full schedule of its own over the steps left."""

    def __init__(self, kind: str):
        self.kind = kind

    def adopt(
        self, group: dict[str, Any], start: int, warmup: int, length: int, kind: str | None = None
    ) -> None:
        group.setdefault("base_lr", group["lr"])
        group["schedule"] = (start, warmup, length, kind or self.kind)
        self.apply(group, start)

    def apply(self, group: dict[str, Any], step: int) -> None:
        start, warmup, length, kind = group["schedule"]
        if step >= start:
            group["lr"] = group["base_lr"] * schedule_factor(step - start, warmup, length, kind)

    def set_step(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        first = optimizer.param_groups[0]
        for group in optimizer.param_groups:
            if "schedule" not in group:
                # Added straight to the optimiser (not through the Trainer handle): it
                # follows the first group's schedule from its own initial lr.
                group.setdefault("base_lr", group["lr"])
                group["schedule"] = first["schedule"]
            self.apply(group, step)


class TrainingDriver:
    """Implements the method API's `Trainer` handle for one training run."""

    def __init__(self, prepared: Prepared, cfg: LoopConfig):
        self.prepared = prepared
        self.cfg = cfg
        self.total_steps = cfg.steps
        self._step = 0
        self.current = 0  # the step being run (set by the loop before its forward)
        self.schedule = Schedule(cfg.schedule)
        self.masters = MasterWeights()
        self.optimizer = self._fresh_optimizer(cfg.steps, cfg.warmup_steps)

    @property
    def step(self) -> int:
        return self._step

    def _fresh_optimizer(self, steps: int, warmup: int) -> torch.optim.Optimizer:
        model = self.prepared.model
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.masters.clear()  # a restart takes fresh masters from the weights as they are now
        optimizer = make_optimizer(
            self.prepared, self.masters.track(named), self.cfg.lr, self.cfg.weight_decay
        )
        for group in optimizer.param_groups:
            self.schedule.adopt(group, self._step, warmup, steps)
        return optimizer

    def restart_optimizer(self, steps: int | None = None) -> torch.optim.Optimizer:
        steps = self.total_steps - self._step if steps is None else steps
        self.optimizer = self._fresh_optimizer(steps, int(self.cfg.warmup_ratio * steps))
        self.prepared.hooks.bind_optimizer(self.optimizer)
        return self.optimizer

    def add_param_group(self, group: dict[str, Any], warmup_steps: int = 0) -> None:
        """As Multi_LambdaLR (IncreLoRA's reference, the one method that grows): a group
        added during step s trains from step s + 1 on lr0 * f(t - s - 1), f warming up
        from 0 over `warmup_steps` and decaying to 0 over the T - s - 1 steps left."""
        group = dict(group)
        tracked = self.masters.track([("", p) for p in group["params"]])
        group["params"] = [p for _, p in tracked]
        group.setdefault("lr", self.cfg.lr)
        group.setdefault("weight_decay", self.cfg.weight_decay)
        self.optimizer.add_param_group(group)
        added = self.optimizer.param_groups[-1]
        start = self.current + 1
        # Until `start` the group keeps lr0; it has no gradients in the step that adds it.
        added["base_lr"] = added["lr"]
        added["schedule"] = (start, warmup_steps, self.total_steps - start, "hf-linear")

    def optimizer_step(self, before_step: Callable[[], None] | None = None) -> None:
        """Clip, run `before_step` (the hooks'), step, and move to the next step's rates."""
        self.masters.pull_grads()
        if self.cfg.grad_clip:
            # Read the groups each step: a hook may have added parameters.
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        if before_step is not None:
            before_step()
        self.optimizer.step()
        self.masters.push_weights()
        self._step += 1
        self.schedule.set_step(self.optimizer, self._step)


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
    driver = TrainingDriver(prepared, cfg)
    stats = TrainStats()
    hooks.bind_trainer(driver)
    hooks.on_train_start(cfg.steps)
    start = time.perf_counter()
    for step in range(cfg.steps):
        t0 = time.perf_counter()
        driver.current = step
        batch = next(batches)
        loss = loss_fn(model, batch)
        extra = hooks.extra_loss()
        total = loss + extra if extra is not None else loss
        if not torch.isfinite(total):
            raise NonFiniteLoss(f"loss became {total.item()} at step {step}")
        driver.optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        total.backward()
        hooks.after_backward(step)
        driver.optimizer_step(lambda step=step: hooks.before_optimizer_step(step))
        hooks.after_optimizer_step(step)
        stats.step_times.append(time.perf_counter() - t0)
        stats.losses.append(float(loss.detach()))
        stats.steps += 1
        stats.samples += int(batch["labels"].shape[0])
        if on_step:
            on_step(step, stats.losses[-1])
    hooks.on_train_end()
    stats.wall_s = time.perf_counter() - start
    stats.optimizer_state_bytes = optimizer_state_bytes(driver.optimizer)
    return stats
