"""A continual cell's tasks, loaded, and how one of them trains and is scored: what the
runner (suite/continual/run.py) and the strategies (suite/continual/strategies.py) share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from suite.continual.cells import ContinualCell
from suite.train.fit import train_cell
from suite.train.load import Setup
from suite.train.prepare import Ready

StepCallback = Callable[[int, int, float], None]


@dataclass
class Stages:
    """The cell's tasks, loaded: a fresh seeded task model (and head) per task."""

    cell: ContinualCell
    setups: list[Setup]
    on_step: StepCallback | None = None
    # Each task's head, taken before any strategy swaps heads on a shared model.
    heads: list[torch.nn.Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.heads = [s.model.head for s in self.setups]

    def train(self, i: int, ready: Ready) -> dict[str, Any]:
        """Train task i within the matrix's budget (per task), reporting steps overall."""
        done = sum(s.steps for s in self.setups[:i])
        total = sum(s.steps for s in self.setups)
        report = None
        if self.on_step:
            report = lambda step, _t, loss: self.on_step(done + step, total, loss)  # noqa: E731
        return train_cell(self.cell.stage(i), self.setups[i], ready, report)

    def score(self, j: int, model: torch.nn.Module) -> tuple[float, int]:
        """Task j's primary test metric for `model`, and the examples it was scored on."""
        from suite.tasks.encoding import split_examples
        from suite.train.batches import eval_batches
        from suite.train.evaluate import predict, score
        from suite.train.precision import autocast_context

        stage, setup = self.cell.stage(j), self.setups[j]
        split = setup.encoded["test"]
        rows = self.sample(j)
        if rows is not None:
            split = split_examples(split, rows)
        batches = eval_batches(split, stage.task.eval_batch_size, setup.pad, setup.collate)
        batches = [{k: v.to(setup.device) for k, v in b.items()} for b in batches]
        model.eval()
        with autocast_context(setup.device, stage.budget.autocast):
            found = predict(model, batches, stage.task, setup.tokenizer)
        return score(stage.task, found)[stage.task.primary_metric], len(split)

    def sample(self, j: int) -> np.ndarray | None:
        """The test positions task j is scored on: a fixed sample of `eval_examples`, the
        same for every cell; None for the whole split."""
        n, limit = len(self.setups[j].encoded["test"]), self.cell.eval_examples
        if limit and n > limit:
            return np.random.default_rng(0).permutation(n)[:limit]
        return None

    def trivial(self, j: int) -> float | None:
        """Task j's trivial predictor (its `baseline`: the majority class, or the train
        mean) on the examples `score` uses, in its primary metric; None without one."""
        from suite.tasks.data import baseline_metrics

        stage, rows = self.cell.stage(j), self.sample(j)
        found = baseline_metrics(
            stage.task, self.setups[j].data, None if rows is None else {"test": rows}
        )
        return found.get("test", {}).get(stage.task.primary_metric)
