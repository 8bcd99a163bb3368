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
from suite.hashing import spec_hash
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
    task_key: str  # the task's spec hash, the key of its cached data and baselines
    baselines: dict  # the task's majority baselines by split (evaluate stores them)
    reference: ReferenceProbe | None
    reference_before: float | None
    memory: PeakMemory


def load(cell: Cell, clock: PhaseClock | None = None) -> Setup:
    """Data, tokenised splits and a fresh seeded task model (from the worker's caches)."""
    clock = clock or PhaseClock()
    device = cell.profile.device()
    task_key, model_key = spec_hash(cell.task), spec_hash(cell.model)  # the caches' keys
    with clock.phase("data_load"):
        before = caches.COUNTS["tokenizations"]
        data = caches.task_data(cell.task, cell.task_dir, task_key)
        baselines = caches.baselines(cell.task, cell.task_dir, task_key)
        tokenizer = caches.tokenizer(cell.model, model_key)
        encoded = caches.encoded(cell.task, cell.task_dir, cell.model, (task_key, model_key))
        clock.cached["data"] = caches.COUNTS["tokenizations"] == before
    with clock.phase("model_load"):
        before = caches.COUNTS["model_loads"]
        # Load (or find cached) the backbone before seeding: loading draws random numbers
        # for weights it then overwrites, so the first cell of a worker would otherwise
        # start from a different random state than the same cell run later on that worker.
        caches.warm(cell.model, cell.base_storage, model_key)
        clock.cached["model"] = caches.COUNTS["model_loads"] == before
        # The cell's memory counts from here: the worker's caches above are not the cell's.
        memory = PeakMemory(device)
        memory.reset()
        seed_everything(cell.seed)
        n = data.num_outputs
        model = caches.task_model(cell.model, n, cell.seed, cell.base_storage, model_key)
        model = model.to(device)
        # Forgetting (causal LMs, when the matrix names reference texts): the base's loss.
        reference = ReferenceProbe.for_reference(cell.reference, tokenizer, device)
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
        task_key=task_key,
        baselines=baselines,
        reference=reference,
        reference_before=reference.loss(model) if reference else None,
        memory=memory,
    )
