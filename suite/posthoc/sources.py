"""What merge and generate methods may read of their sources beyond their updates
(`SourceData`, suite/posthoc/api.py), and putting a fusion's layers into a task's model.

Training a fusion (AutoLoRA's gates) is one run of the stage's budget through the
project's training loop over every source task's training split (never validation or
test): one batch of each task in turn, each through its own trained head and the same
fused layers (one shared module per layer, installed in every task's model), with every
base weight, source adapter and head frozen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import count

from torch import nn

from suite.methods.api import Prepared
from suite.posthoc.api import SourceData
from suite.posthoc.cells import PosthocCell
from suite.posthoc.inputs import LoadedInput, build_model, training_slice
from suite.train.batches import train_batches
from suite.train.evaluate import task_loss
from suite.train.loop import LoopConfig, TrainStats, planned_steps, train

# The batch key that says which source task a training batch belongs to.
TASK_KEY = "posthoc_task"


def install(model: nn.Module, layers: dict[str, Callable[[nn.Linear], nn.Module]]) -> nn.Module:
    """Replace each named backbone linear by what its `wrap` makes of it, in place."""
    for name, wrap in layers.items():
        parent, _, child = name.rpartition(".")
        owner = model.backbone.get_submodule(parent) if parent else model.backbone
        setattr(owner, child, wrap(getattr(owner, child)))
    return model


def source_data(cell: PosthocCell, inputs: list[LoadedInput]) -> SourceData:
    def examples(index: int, n: int, batch_size: int = 16) -> list[dict]:
        return training_slice(inputs[index], n, cell.seed, batch_size)

    def base_model(index: int) -> nn.Module:
        return build_model(inputs[index], {})

    trainer = _trainer(cell, inputs) if cell.budget is not None else None
    return SourceData(examples=examples, base_model=base_model, train=trainer)


def _tagged(cell: PosthocCell, inputs: list[LoadedInput]) -> Iterator[dict]:
    """One batch of each source task in turn, on its device, tagged with its index."""
    budget = cell.budget
    streams = [
        train_batches(s.setup.encoded["train"], budget.batch_size, s.setup.pad, s.setup.collate,
                      cell.seed + i)
        for i, s in enumerate(inputs)
    ]  # fmt: skip
    for step in count():
        i = step % len(inputs)
        batch = next(streams[i])
        yield {TASK_KEY: i, **{k: v.to(inputs[i].setup.device) for k, v in batch.items()}}


def _trainer(cell: PosthocCell, inputs: list[LoadedInput]):
    """train(layers, lr, weight_decay) -> TrainStats (see the module doc)."""
    budget = cell.budget
    steps = planned_steps(
        sum(len(s.setup.encoded["train"]) for s in inputs), budget.batch_size, budget.epochs,
        budget.max_steps, budget.tokens, max(s.cell.task.max_length for s in inputs),
    )  # fmt: skip
    losses = [task_loss(s.cell.task) for s in inputs]

    def loss(models: nn.ModuleList, batch: dict):
        i = batch[TASK_KEY]
        return losses[i](models[i], {k: v for k, v in batch.items() if k != TASK_KEY})

    def run(layers: dict[str, Callable[[nn.Linear], nn.Module]], lr: float, weight_decay: float):
        models = nn.ModuleList()
        for source in inputs:
            model = build_model(source, {})
            model.requires_grad_(False)  # before install: the layers bring their own
            models.append(install(model, layers))
        cfg = LoopConfig(
            steps=steps, lr=lr, weight_decay=weight_decay,
            warmup_ratio=budget.warmup_ratio, grad_clip=budget.grad_clip,
        )  # fmt: skip
        stats: TrainStats = train(Prepared(model=models), _tagged(cell, inputs), loss, cfg)
        models.eval()
        return stats

    run.steps = steps  # type: ignore[attr-defined]
    return run
