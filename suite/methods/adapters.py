"""Shared machinery for methods that wrap frozen linear layers.

`AdapterLinear` holds the frozen base layer and adds an update path; subclasses define
`update(x)` (the unmerged forward contribution) and `delta_weight()` (the same update as
a d_out x d_in matrix, for merging). Methods whose forward is not additive (DoRA)
override `forward` and `merged_weight` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.api import Method, MethodParams, PrepareContext, Prepared, StepHooks
from suite.methods.targets import find_targets, replace_module


class TargetedParams(MethodParams):
    """Hyperparameters of a method that adapts target modules: a preset's family name
    ("qv", "attention", "mlp", "all-linear") or explicit module names."""

    targets: str | list[str] = "qv"


class LowRankUpdateParams(TargetedParams):
    """A LoRA-shaped update on each target: rank `r` (checked against the targets'
    shapes), scale alpha / r, dropout on the update's input. LoRA's own defaults; a
    method whose reference differs overrides the field (RandLoRA's r 32, alpha 640)."""

    rank_fields = ("r",)
    r: PositiveInt = 8
    alpha: PositiveFloat = 16
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)


class LinearAdapterMethod(Method):
    """A method that wraps every target linear in one `layer` (an AdapterLinear).

    A new method of this shape needs only its layer and its Params: `layer(linear, params)`,
    or with `seeded`, `layer(linear, params, generator)`, one CPU generator seeded from the
    cell's seed and shared by the layers in module order (random inits that must not
    depend on the global random state)."""

    Params: ClassVar[type[MethodParams]] = TargetedParams
    layer: ClassVar[Callable[..., AdapterLinear]]
    seeded: ClassVar[bool] = False

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        layer, params = type(self).layer, self.params
        if self.seeded:
            gen = ctx.generator()
            wrap_targets(model, patterns, lambda _name, linear: layer(linear, params, gen))
        else:
            wrap_targets(model, patterns, lambda _name, linear: layer(linear, params))
        return adapter_prepared(model)


class AdapterLinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable update.

    On a bf16/fp16 base the runner casts the adapter's own tensors to fp32 and sets
    `adapter_dtype`; the update then runs on the input cast to fp32 and is added to the
    base output before casting back, as PEFT's LoRA layer does.
    """

    # None: the update runs in the input's dtype (fp32 bases).
    adapter_dtype: torch.dtype | None = None

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.merged = False
        for p in base.parameters():
            p.requires_grad_(False)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def adapter_input(self, x: torch.Tensor) -> torch.Tensor:
        """`x` in the adapter's dtype: for subclasses that override `forward` (cast the
        result back with `.to(x.dtype)`)."""
        return x if self.adapter_dtype is None else x.to(self.adapter_dtype)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def low_rank_factors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(B, A) with `delta_weight() == B @ A` exactly (any scale folded into B), for
        layers whose update is a plain low-rank product (LoRA); None otherwise. Post-hoc
        merges that work on ranks (LoRA-LEGO, RMM) read them."""
        return None

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.delta_weight().to(self.base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        if self.adapter_dtype is None:
            return out + self.update(x)
        return (out + self.update(x.to(self.adapter_dtype))).to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            if hasattr(self.base, "snapshot"):
                # A compressed base (suite/models/storage.py): the merged matrix is held
                # densely (PEFT re-quantises it into a 4-bit base, which moves outputs).
                self._unmerged_weight = self.base.snapshot()
                self.base.merge_dense(self.merged_weight())
            else:
                self._unmerged_weight = self.base.weight.detach().clone()
                self.base.weight.copy_(self.merged_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        # Restoring the saved weight (rather than subtracting) keeps unmerge exact.
        if self.merged:
            if hasattr(self.base, "restore"):
                self.base.restore(self._unmerged_weight)
            else:
                self.base.weight.copy_(self._unmerged_weight)
            del self._unmerged_weight
            self.merged = False


class FactoredLinear(AdapterLinear):
    """An adapter whose update is scaling * B A, with (A, B) = `factors()` (A r x d_in,
    B d_out x r) built anew at each call from the layer's own tensors (NOLA's mixtures of
    random bases, RandLoRA's scaled shared bases). Subclasses set `scaling` and
    `dropout` (on the update's input; nn.Identity for none)."""

    scaling: float
    dropout: nn.Module

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def update(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.factors()
        return nn.functional.linear(nn.functional.linear(self.dropout(x), a), b) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return (b @ a) * self.scaling


def wrap_targets(model: nn.Module, patterns: list[str], factory) -> list[tuple[str, nn.Module]]:
    """Replace every target linear under `model.backbone` by `factory(name, linear)`."""
    wrapped = []
    for name, linear in find_targets(model.backbone, patterns):
        adapter = factory(name, linear)
        replace_module(model.backbone, name, adapter)
        wrapped.append((name, adapter))
    return wrapped


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor, detached (the default saved adapter)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter tensors, refusing names the model does not have."""
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise KeyError(f"adapter tensors not in the model: {unknown[:5]}")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor)


def merging(modules: list[nn.Module]) -> tuple[Callable[[], None], Callable[[], None]]:
    """Prepared's merge and unmerge for modules that each merge and unmerge themselves."""

    def merge() -> None:
        for m in modules:
            m.merge()

    def unmerge() -> None:
        for m in modules:
            m.unmerge()

    return merge, unmerge


def adapter_prepared(
    model: nn.Module, hooks: StepHooks | None = None, mergeable: bool = True
) -> Prepared:
    """A Prepared for a model whose adaptation lives in AdapterLinear modules."""
    adapters = [m for m in model.modules() if isinstance(m, AdapterLinear)]
    merge, unmerge = merging(adapters)
    return Prepared(
        model=model,
        hooks=hooks or StepHooks(),
        merge=merge if mergeable else None,
        unmerge=unmerge if mergeable else None,
        adapter_state=lambda: trainable_state(model),
        load_adapter_state=lambda state: load_state_strict(model, state),
    )


class TaskBoundaryHooks(StepHooks):
    """Hooks of a continual method whose layers each carry a task over themselves: at a
    task boundary every layer's `next_task()` freezes what it learned and opens fresh
    trainable tensors (CoDyRA, MoRAM)."""

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers

    def on_task_boundary(self) -> None:
        for m in self.layers:
            m.next_task()
