"""The method contract.

A method plugin is a class with a pydantic `Params` model (its hyperparameters, validated
once) whose `prepare` turns a task model into what the generic training loop needs.
Methods that change their own structure while training (pruning, regrowth, rank
allocation, proximal steps, phases) do so through `StepHooks`; the loop never branches on
a method's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, model_validator

if TYPE_CHECKING:
    import torch
    from torch import nn

    from suite.specs.model import ModelPreset


class MethodParams(BaseModel):
    """Base for a method's hyperparameters: frozen, unknown keys are errors.

    Values that only a model's shapes make impossible (a rank above a layer's dimension,
    a block count that does not divide its width) are found at plan time, before
    anything runs: `shape_issues` gets the (d_out, d_in) of every weight the `targets`
    select, from the preset's model built on the meta device (suite/checks.py).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Hyperparameters that are the rank of each target's update (None: unset): each must
    # not exceed min(d_out, d_in) of any targeted weight.
    rank_fields: ClassVar[tuple[str, ...]] = ()
    # Hyperparameters that count entries of each target's d_out x d_in spectrum or weight
    # (FourierFT's and LoCA's n_frequency): each must not exceed d_out * d_in.
    spectrum_fields: ClassVar[tuple[str, ...]] = ()

    def shape_issues(self, shapes: list[tuple[int, int]]) -> dict[str, str]:
        """{hyperparameter: why} for each value the targeted weights' `shapes` (each
        (d_out, d_in); at least one) make impossible. Methods with other shape limits
        extend it (`issues = super().shape_issues(shapes)`, then their own)."""
        d_out, d_in = min(shapes, key=min)
        issues = {}
        for name in self.rank_fields:
            value = getattr(self, name)
            if value is not None and value > min(d_out, d_in):
                issues[name] = (
                    f"{name} = {value} exceeds min(d_out, d_in) = {min(d_out, d_in)} of a "
                    f"targeted {d_out} x {d_in} weight"
                )
        d_out, d_in = min(shapes, key=lambda s: s[0] * s[1])
        for name in self.spectrum_fields:
            value = getattr(self, name)
            if value is not None and value > d_out * d_in:
                issues[name] = (
                    f"{name} = {value} exceeds the {d_out} x {d_in} spectrum of a targeted weight"
                )
        return issues


def at_most(low: str, high: str) -> Any:
    """A Params validator: the field `low` must not exceed the field `high` (a top-k
    within its experts, a target rank within the initial one). Assign it in the class
    body: `_k_within_experts = at_most("top_k", "experts")`."""

    def check(params: MethodParams) -> MethodParams:
        small, large = getattr(params, low), getattr(params, high)
        if small > large:
            raise ValueError(f"{low} ({small}) must not exceed {high} ({large})")
        return params

    return model_validator(mode="after")(check)


class StepHooks:
    """Callbacks the generic training loop calls; every one is a no-op by default."""

    def bind_trainer(self, trainer: Trainer) -> None:
        """Called once with the training driver's handle, before `on_train_start`.

        For methods that restart the optimiser and its schedule (LT-SFT's two phases) or
        add parameter groups with their own schedule mid-run (IncreLoRA). The default
        hands the optimiser to `bind_optimizer`.
        """
        self.bind_optimizer(trainer.optimizer)

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called with the training optimiser (again after `Trainer.restart_optimizer`).

        For methods that must edit optimiser state mid-training (SpIEL seeds the Adam
        moments of regrown entries).
        """

    def on_train_start(self, total_steps: int) -> None:
        """Before the first step, once the optimiser exists."""

    def extra_loss(self) -> torch.Tensor | None:
        """A regulariser added to the task loss (e.g. an orthogonality penalty)."""
        return None

    def after_backward(self, step: int) -> None:
        """After gradients exist, before clipping and the optimiser step."""

    def before_optimizer_step(self, step: int) -> None:
        """After clipping, right before the optimiser step (IncreLoRA scores the clipped
        gradients there, as its reference trainer does)."""

    def after_optimizer_step(self, step: int) -> None:
        """After the optimiser step (proximal updates, prune/regrow, rank budget)."""

    def on_train_end(self) -> None:
        """After the last step, before evaluation (e.g. prune zeroed ranks)."""

    def on_task_boundary(self) -> None:
        """Before the model trains on the next task of a sequence (the continual track's
        `sequential` strategy; never before the first task, nor in a single-task cell).
        For continual methods that freeze what the last task learned and open fresh
        trainable ranks (CoDyRA merges its gated LoRA into W; MoRAM appends its rank-1
        experts to a frozen pool). The optimiser is built after it, over the parameters
        trainable then."""


class Trainer(Protocol):
    """The training driver's handle, given to `StepHooks.bind_trainer`."""

    optimizer: torch.optim.Optimizer
    total_steps: int

    @property
    def step(self) -> int:
        """Optimiser steps taken so far."""

    def restart_optimizer(self, steps: int | None = None) -> torch.optim.Optimizer:
        """A fresh optimiser over the parameters trainable now, with a fresh warmup + decay
        schedule over `steps` (default: the steps left); calls `bind_optimizer` with it."""

    def add_param_group(self, group: dict[str, Any], warmup_steps: int = 0) -> None:
        """Add parameters mid-run with their own schedule over the steps left, as
        IncreLoRA's Multi_LambdaLR does: from the next step, linear warmup from 0 over
        `warmup_steps`, then linear decay to zero at the run's last step."""


@dataclass(frozen=True)
class TrainingPlan:
    """The optimisation a prepared model will get (for inits that depend on it: LoRA-SB's
    update approximation uses lr / warmup steps)."""

    lr: float
    steps: int
    warmup_steps: int
    weight_decay: float = 0.0


@dataclass
class PrepareContext:
    """What a method may use while preparing a model."""

    preset: ModelPreset
    seed: int
    device: torch.device
    # Yields training batches (dicts of tensors); for gradient-based initialisations.
    train_batches: Callable[[], Iterator[dict[str, torch.Tensor]]] | None = None
    # Computes the task loss of the model on one batch (for gradient-based masks/inits).
    loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None
    # The training the model will get; None where a model is prepared but not trained.
    training: TrainingPlan | None = None
    # Batches of the training examples held out from training for the method's own use
    # (`Method.train_holdout`); None when it holds out nothing.
    holdout_batches: Callable[[], Iterator[dict[str, torch.Tensor]]] | None = None

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the cell's seed (+ offset), for random inits that
        must not depend on the global random state."""
        import torch

        return torch.Generator().manual_seed(self.seed + offset)


@dataclass
class Prepared:
    """What `Method.prepare` returns to the training loop."""

    model: nn.Module
    hooks: StepHooks = field(default_factory=StepHooks)
    merge: Callable[[], None] | None = None
    unmerge: Callable[[], None] | None = None
    # The tensors that make up the saved adapter, and how to load them back.
    adapter_state: Callable[[], dict[str, torch.Tensor]] | None = None
    load_adapter_state: Callable[[dict[str, torch.Tensor]], None] | None = None
    # A method may bring its own optimiser (GaLore, FRUGAL): (named params, lr, wd) -> opt.
    # The named tensors are what the driver steps (fp32 masters on a bf16 base), named as
    # the model's parameters; the driver's schedule sets each group's `lr` every step. An
    # optimiser keeping state outside `optimizer.state` lists it in an optional
    # `extra_state_tensors()`, so the row's `optimizer_state_bytes` counts it.
    make_optimizer: Callable[..., torch.optim.Optimizer] | None = None
    # The parameters the trained adapter holds, where `requires_grad` does not say it
    # (LT-SFT trains a K-entry mask of its target weights). None: count requires_grad
    # tensors after training (so ranks IncreLoRA grew and ranks SoRA pruned both count).
    trainable_count: Callable[[], int] | None = None
    # A learning-rate multiplier per trainable parameter name (LoCA's locations train at
    # their own rate); the default optimiser groups parameters by it. None: 1 for all.
    lr_scale: Callable[[str], float] | None = None
    # Bytes of the base the model trains on and of the base it is scored with, as stored,
    # where they are not the backbone's frozen tensors (PELA's and SketchTune's trained
    # factors are their base; LoRAM trains on a pruned base and infers on the full one).
    base_bytes: Callable[[], int] | None = None
    inference_base_bytes: Callable[[], int] | None = None

    @property
    def mergeable(self) -> bool:
        return self.merge is not None


class Method:
    """Base class of method plugins (subclassing is optional; the attributes are the contract)."""

    Params: ClassVar[type[MethodParams]] = MethodParams
    # Whether a target may name a part of a fused projection (GPT-2's `attn.c_attn.q`):
    # the part is then a plain nn.Linear (suite/methods/fused.py). False for a method
    # whose code reaches past the linears it targets; the plan refuses slices for it.
    adapts_slices: ClassVar[bool] = True

    def __init__(self, params: MethodParams):
        self.params = params

    @classmethod
    def model_issue(cls, preset: ModelPreset) -> str | None:
        """Why this method cannot run on `preset` at all (a model family whose layer
        layout it does not know), or None. Checked at plan time (suite/checks.py)."""
        return None

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        """Freeze/adapt `model` (a TaskModel whose head is already trainable)."""
        raise NotImplementedError

    def expected_trainable_params(self, shapes: list[tuple[int, int]]) -> int:
        """Trainable parameters the paper's formula predicts for target weights of `shapes`
        (each (d_out, d_in)), excluding the task head."""
        raise NotImplementedError

    def train_holdout(self) -> float:
        """The share of the training split this method holds out for its own outer loop
        (DiffoRA's bi-level step). The runner takes it out of the training stream (a fixed
        slice, the same for every seed), hands it over as `ctx.holdout_batches`, and records
        it on the row. Validation and test are never touched. 0: nothing held out."""
        return 0.0

    @classmethod
    def plugin_name(cls) -> str:
        """The name of the plugin's folder (the method's, one folder per plugin), for
        messages written by shared machinery."""
        return Path(inspect.getfile(cls)).parent.name
