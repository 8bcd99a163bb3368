"""Run one continual cell in this process: load every task, score the untrained models
(the baseline vector), then train through the sequence under the cell's strategy,
scoring every task after every stage (the accuracy matrix, suite/continual/metrics.py)."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from suite.continual.cells import ContinualCell
from suite.continual.metrics import transfer
from suite.continual.strategies import STRATEGIES
from suite.results import ContinualMeasured, ContinualMeasurements
from suite.train.fit import train_cell
from suite.train.load import Setup, load
from suite.train.loop import NonFiniteLoss
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
        limit = self.cell.eval_examples
        if limit and len(split) > limit:  # a fixed sample, the same for every cell
            split = split_examples(split, np.random.default_rng(0).permutation(len(split))[:limit])
        batches = eval_batches(split, stage.task.eval_batch_size, setup.pad, setup.collate)
        batches = [{k: v.to(setup.device) for k, v in b.items()} for b in batches]
        model.eval()
        with autocast_context(setup.device, stage.budget.autocast):
            found = predict(model, batches, stage.task, setup.tokenizer)
        return score(stage.task, found)[stage.task.primary_metric], len(split)


def run_continual(cell: ContinualCell, on_step: StepCallback | None = None) -> ContinualMeasured:
    """Run a continual cell; any exception becomes its outcome (status and error text)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = datetime.now(UTC)
    try:
        outcome = {"status": "ok", "measurements": _run(cell, on_step)}
    except NonFiniteLoss as exc:
        outcome = {"status": "nan", "error": str(exc)}
    except (torch.OutOfMemoryError, MemoryError) as exc:
        outcome = {"status": "oom", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    except Exception as exc:  # noqa: BLE001 - a failing cell must never stop the matrix
        outcome = {"status": "failed", "error": "".join(traceback.format_exception(exc))[-4000:]}
    wall = (datetime.now(UTC) - t0).total_seconds()
    return ContinualMeasured(**outcome, started_at=started, cell_wall_s=wall)


def _run(cell: ContinualCell, on_step: StepCallback | None) -> ContinualMeasurements:
    from suite.methods.source import source_hash
    from suite.train.prepare import method_class

    stages = Stages(cell, [load(cell.stage(i)) for i in range(len(cell.tasks))], on_step)
    n = len(cell.tasks)
    first = [stages.score(j, stages.setups[j].model) for j in range(n)]
    baseline, examples = [s for s, _ in first], [k for _, k in first]
    strategy = STRATEGIES[cell.strategy](stages)
    scores, trained = [], []
    for i in range(n):
        trained.append(strategy.train(i))
        scores.append([stages.score(j, strategy.model_for(j))[0] for j in range(n)])
    summary = transfer(scores, baseline)
    return ContinualMeasurements(
        sequence=cell.sequence,
        metrics=[t.primary_metric for t in cell.tasks],
        scores=scores,
        baseline=baseline,
        avg_accuracy=summary.acc,
        bwt=summary.bwt,
        fwt=summary.fwt,
        eval_examples=examples,
        stage_steps=[t["train_steps"] for t in trained],
        final_train_losses=[t["final_train_loss"] for t in trained],
        train_wall_s=sum(t["train_wall_s"] for t in trained),
        trainable_params=strategy.trainable_params(trained),
        peak_memory_bytes=max(t["peak_memory_bytes"] or 0 for t in trained) or None,
        method_source_hash=source_hash(method_class(cell.stage(0))),
        device=str(stages.setups[0].device),
    )
