"""The post-hoc method contract: merge, generate and compress methods.

A plugin is a class with a pydantic `Params` model (validated before anything runs) and
one of:

- `merge(updates, ctx) -> Merged`: combine task updates (one `TaskUpdate` per source
  task, in the stage's task order) into one update every task uses, or (RMM) into a
  store from which each task's update is rebuilt, or (AutoLoRA) into layers with
  trained parts that replace the backbone's linears;
- `generate(updates, ctx) -> Merged`: each source task's update made anew from the
  other sources' updates alone (ICM-LoRA), never from the task's own (`per_task`);
- `compress(model, ctx) -> Compressed`: shrink a trained task model in place.

The runner (suite/posthoc/run.py) loads the inputs, evaluates the results on every source
task and measures them; a method only computes. Generic code never branches on a
method's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from torch import nn

    from suite.posthoc.calibrate import Calibration
    from suite.specs.budget import Budget
    from suite.specs.model import ModelPreset
    from suite.train.loop import TrainStats


class PosthocParams(BaseModel):
    """Base for a post-hoc method's hyperparameters: frozen, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass
class TaskUpdate:
    """What one trained cell added to the shared base weights, over the backbone.

    `deltas`: parameter name -> theta_t - theta_0, for every backbone parameter the
    training changed. `factors`: weight name -> (B, A) with delta = B @ A exactly (the
    scale folded into B), for the layers a low-rank adapter trained; empty otherwise.
    """

    task: str
    deltas: dict[str, torch.Tensor]
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass
class SourceData:
    """What a merge or generate method may read of its sources beyond their updates
    (suite/posthoc/sources.py fills it).

    `examples(index, n)`: the first n examples of a fixed permutation of source `index`'s
    training split (never validation or test), batched, on the device; `base_model(index)`:
    theta_0 with source `index`'s trained head, in eval mode; `train(layers, lr,
    weight_decay)`: one run of the stage's budget over every source's training split (one
    batch of each task in turn, each through its own head and the same `layers`), only
    the layers' trainable parameters trained (None when the stage has no budget)."""

    examples: Callable[[int, int], list[dict]]
    base_model: Callable[[int], nn.Module]
    train: Callable[..., TrainStats] | None = None


@dataclass
class MergeContext:
    seed: int
    # Filled by the runner for every cell; None where a test merges tensors alone.
    data: SourceData | None = None

    def generator(self, offset: int = 0):
        import torch

        return torch.Generator().manual_seed(self.seed + offset)


@dataclass
class Merged:
    """A merge's result: `shared` (one update for every task), or `per_task` (each
    task's rebuilt update, in input order); `stored`: the tensors that must be kept.
    `layers`: backbone module name -> wrap(that linear) -> the module that replaces it,
    for fusions whose output is not a weight update (the same trained parts in every
    task's model); `train_steps`/`train_wall_s`: what training the stage did."""

    stored: dict[str, torch.Tensor]
    shared: dict[str, torch.Tensor] | None = None
    per_task: list[dict[str, torch.Tensor]] | None = None
    layers: dict[str, Callable[[nn.Linear], nn.Module]] | None = None
    train_steps: int | None = None
    train_wall_s: float | None = None
    notes: str | None = None

    def update_for(self, index: int) -> dict[str, torch.Tensor]:
        if self.per_task is not None:
            return self.per_task[index]
        assert self.shared is not None, "a merge returns shared or per_task updates"
        return self.shared


@dataclass
class CompressContext:
    """What a compress method may use.

    `targets`: the backbone's linear layers the method's `targets` name (resolved through
    the model preset), in module order; `calibration`: the fixed training slice and how to
    run the model on it; `retrain(model, steps, seed, lr, weight_decay, hooks)` trains the
    model on the source task's training split through the project's training loop
    (stages that train: their `budget` bounds each run)."""

    preset: ModelPreset
    seed: int
    device: Any
    resolve: Callable[[str | list[str]], list[tuple[str, nn.Linear]]]
    calibration: Calibration | None = None
    budget: Budget | None = None
    retrain: Callable[..., TrainStats] | None = None


@dataclass
class Compressed:
    """A compression's result (the model itself was changed in place).

    `pruned`/`total`: parameters removed over the targeted weights (zeros for pruning,
    rank factors' savings for low-rank); `level`/`level_label`: the nominal level the
    method was asked for (the x axis of the quality-against-sparsity curve); `sparse`:
    the model's parameters (names under `model`) that are kept sparse, with their N:M
    pattern or None (unstructured): they are counted in compact form, and a pattern is
    checked group by group."""

    pruned: int
    total: int
    level: float
    level_label: str
    sparse: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    train_steps: int | None = None
    train_wall_s: float | None = None
    notes: str | None = None


class PosthocMethod:
    """A post-hoc plugin: its hyperparameters, validated by `Params` before it runs."""

    Params: ClassVar[type[PosthocParams]] = PosthocParams

    def __init__(self, params: PosthocParams):
        self.params = params


class MergeMethod(PosthocMethod):
    def merge(self, updates: list[TaskUpdate], ctx: MergeContext) -> Merged:
        raise NotImplementedError


class GenerateMethod(PosthocMethod):
    def generate(self, updates: list[TaskUpdate], ctx: MergeContext) -> Merged:
        raise NotImplementedError


class CompressMethod(PosthocMethod):
    def compress(self, model: nn.Module, ctx: CompressContext) -> Compressed:
        raise NotImplementedError
