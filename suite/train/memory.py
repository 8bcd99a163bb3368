"""Training memory broken down: frozen weights, trainable weights, gradients, optimiser
state, and activations plus the rest.

The first four are exact byte counts of the tensors that hold them (as stored: an nf4
matrix counts its packed codes and scalers), taken after every optimiser step and kept
at their largest; the optimiser state is `suite.train.measure.optimizer_state_bytes`
(also what the row's `optimizer_state_bytes` holds, so the two never disagree); trainable weights include the fp32 master copies of low-precision
trained tensors, gradients those of the masters. The fifth is what the measured peak
(suite/train/measure.PeakMemory: the cell's own increment; CUDA: max_memory_allocated)
holds beyond them: activations kept for backward, temporaries, the allocator's slack,
and anything a method keeps outside the model (a distillation teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from suite.models.storage import module_bytes, stored_bytes
from suite.train.measure import optimizer_state_bytes


@dataclass
class MemoryParts:
    frozen_weights: int = 0
    trainable_weights: int = 0
    gradients: int = 0
    optimizer_state: int = 0

    def total(self) -> int:
        return self.frozen_weights + self.trainable_weights + self.gradients + self.optimizer_state


def _unique_bytes(tensors) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if t is not None and id(t) not in seen:
            seen.add(id(t))
            total += stored_bytes(t)
    return total


def measure_parts(model: nn.Module, optimizer: torch.optim.Optimizer, masters=()) -> MemoryParts:
    """The four tensor parts now; `masters` are the fp32 copies the optimiser steps."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    masters = list(masters)
    return MemoryParts(
        frozen_weights=module_bytes(model, trainable=False),
        trainable_weights=_unique_bytes([*trainable, *masters]),
        gradients=_unique_bytes([p.grad for p in [*trainable, *masters]]),
        optimizer_state=optimizer_state_bytes(optimizer),
    )


class MemoryProbe:
    """Called by the training loop after every optimiser step; keeps each part's maximum."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.parts = MemoryParts()

    def __call__(self, driver) -> None:
        masters = [m for _, m in driver.masters.pairs.values()]
        now = measure_parts(self.model, driver.optimizer, masters)
        for name in vars(self.parts):
            setattr(self.parts, name, max(getattr(self.parts, name), getattr(now, name)))

    def fields(self, peak_bytes: int | None) -> dict[str, int | None]:
        parts = self.parts
        rest = None if peak_bytes is None else max(peak_bytes - parts.total(), 0)
        return {
            "mem_frozen_weights_bytes": parts.frozen_weights,
            "mem_trainable_weights_bytes": parts.trainable_weights,
            "mem_gradients_bytes": parts.gradients,
            "optimizer_state_bytes": parts.optimizer_state,
            "mem_activations_other_bytes": rest,
        }
