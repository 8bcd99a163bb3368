"""How a method's adapter carries over from one task of the sequence to the next.

Every task keeps its own classification head (the task-incremental setting): the tasks of
a sequence have label sets of their own (10 conditions, 3 sentiments, fresh/rotten), so
one shared output layer would add a class-incremental problem that no adapter method is
about. What differs between strategies is the adapter:

- `sequential`: one adapter, trained on each task in turn (a fresh optimiser and schedule
  per task); task i's head trains only in stage i. For LoRA, the lower bound on
  retention: nothing protects what earlier tasks learned from later updates of the
  shared adapter. A continual method protects it through its hooks' `on_task_boundary`,
  called before every task but the first (CoDyRA, MoRAM).
- `per-task`: a fresh adapter (and head) per task, trained on that task only, scored with
  it ever after. The upper bound on retention: it cannot forget (BWT = 0).

A strategy is a class built with the cell's `Stages`; `train(i)` trains the sequence's
task i and `model_for(j)` is the model that scores task j now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import nn

    from suite.continual.stages import Stages


class Strategy(Protocol):
    def train(self, i: int) -> dict[str, Any]: ...

    def model_for(self, j: int) -> nn.Module: ...

    def trainable_params(self, trained: list[dict[str, Any]]) -> int: ...


def _use_head(model: nn.Module, head: nn.Module) -> None:
    if not hasattr(model, "head"):
        raise ValueError(f"the prepared model ({type(model).__name__}) has no task head to swap")
    model.head = head


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class Sequential:
    """One adapter trained through the sequence; a head per task."""

    def __init__(self, stages: Stages):
        from suite.train.prepare import prepare

        self.stages = stages
        self.ready = prepare(stages.cell.stage(0), stages.setups[0])
        self.model = self.ready.prepared.model

    def train(self, i: int) -> dict[str, Any]:
        _use_head(self.model, self.stages.heads[i])
        if i > 0:
            self.ready.prepared.hooks.on_task_boundary()
        return self.stages.train(i, self.ready)

    def model_for(self, j: int) -> nn.Module:
        _use_head(self.model, self.stages.heads[j])
        return self.model

    def trainable_params(self, trained: list[dict[str, Any]]) -> int:
        return trained[-1]["adapter_params"] + sum(_params(h) for h in self.stages.heads)


class PerTask:
    """A fresh adapter and head per task; each task is scored with its own."""

    def __init__(self, stages: Stages):
        self.stages = stages
        # Until task j is trained, its model is the base with j's fresh head (= baseline).
        self.models = [s.model for s in stages.setups]

    def train(self, i: int) -> dict[str, Any]:
        from suite.train.prepare import prepare

        ready = prepare(self.stages.cell.stage(i), self.stages.setups[i])
        self.models[i] = ready.prepared.model
        return self.stages.train(i, ready)

    def model_for(self, j: int) -> nn.Module:
        return self.models[j]

    def trainable_params(self, trained: list[dict[str, Any]]) -> int:
        return sum(t["trainable_params"] for t in trained)


STRATEGIES: dict[str, type] = {"sequential": Sequential, "per-task": PerTask}
