"""The load phase: a cell's data, tokenised splits and a fresh seeded task model.

Timed as two phases of the cell's clock (data_load, model_load: suite/results.py), each
also saying whether the worker's caches had it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from suite.cells import Cell
from suite.tasks.forgetting import ReferenceProbe
from suite.tasks.types import task_type
from suite.train import caches
from suite.train.loop import planned_steps
from suite.train.measure import PeakMemory
from suite.train.phases import PhaseClock


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class Setup:
    """What a cell loads before any method touches the model."""

    device: torch.device
    data: Any
    tokenizer: Any
    encoded: dict
    model: torch.nn.Module
    steps: int
    pad: int
    # The task type's functions, resolved once for every phase (suite/tasks/types.py).
    collate: Callable
    loss: Callable
    predict: Callable
    reference: ReferenceProbe | None
    reference_before: float | None
    memory: PeakMemory


def load(cell: Cell, clock: PhaseClock | None = None) -> Setup:
    """Data, tokenised splits and a fresh seeded task model (from the worker's caches)."""
    clock = clock or PhaseClock()
    device = cell.profile.device()
    with clock.phase("data_load"):
        before = caches.COUNTS["tokenizations"]
        data = caches.task_data(cell.task, cell.task_dir)
        tokenizer = caches.tokenizer(cell.model)
        encoded = caches.encoded(cell.task, cell.task_dir, cell.model)
        clock.cached["data"] = caches.COUNTS["tokenizations"] == before
    with clock.phase("model_load"):
        model, memory, reference = _load_model(cell, device, data, tokenizer, clock)
    budget, kind = cell.budget, task_type(cell.task)
    steps = planned_steps(
        len(encoded["train"]), budget.batch_size, budget.epochs, budget.max_steps,
        budget.tokens, cell.task.max_length,
    )  # fmt: skip
    return Setup(
        device=device,
        data=data,
        tokenizer=tokenizer,
        encoded=encoded,
        model=model,
        steps=steps,
        pad=tokenizer.pad_token_id or 0,
        collate=kind.function("collator"),
        loss=kind.function("loss"),
        predict=kind.function("predictor"),
        reference=reference,
        reference_before=reference.loss(model) if reference else None,
        memory=memory,
    )


def _load_model(cell: Cell, device, data, tokenizer, clock: PhaseClock):
    """The seeded task model on its device, the cell's memory meter, the reference probe."""
    before = caches.COUNTS["model_loads"]
    # Load (or find cached) the backbone before seeding: loading draws random numbers for
    # weights it then overwrites, so the first cell of a worker would otherwise start
    # from a different random state than the same cell run later on that worker.
    caches.warm(cell.model, cell.base_storage)
    clock.cached["model"] = caches.COUNTS["model_loads"] == before
    # The cell's memory counts from here: the worker's caches above are not the cell's.
    memory = PeakMemory(device)
    memory.reset()
    seed_everything(cell.seed)
    model = caches.task_model(cell.model, data.num_outputs, cell.seed, cell.base_storage)
    model = model.to(device)
    # Forgetting (causal LMs, when the matrix names reference texts): the base model's loss.
    reference = ReferenceProbe.for_reference(cell.reference, tokenizer, device)
    return model, memory, reference
