"""Shared machinery for pretraining parametrisations: a target linear is *replaced*.

In pretraining from scratch there is no frozen W0 to adapt: low-rank (W = B A), SLTrain
(W = s B A + S), SST (W = U diag(sigma) V^T) and LOST swap each targeted `nn.Linear` for
a module that holds its own trainable factors, initialised from the cell's generator or
from the layer's own random init, and the discarded dense weight is gone. Every other
weight of the model (embeddings, norms, the LM head) trains as in full-rank training,
unless `train_rest` is off (the conformance suite's setting, so that the count it checks
is the replaced layers' factors alone; the layers' biases then stay frozen too).

Precision: the factors are created in the base's dtype and the engine keeps them in fp32
on a bf16/fp16 base; the forward casts them to the input's dtype, so the replaced layers
compute in the same precision as the full-rank model's layers (bf16 matmuls on a bf16
base, fp32 master values in the optimiser). There is no frozen base output that an
update could be lost against, which is why adapters compute in fp32 and these do not.

`flop_weights` (multiply-adds per token of the forward, and of them those whose weight
gradient is computed) lets suite/train/flops.py count these modules like linears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods.adapters import load_state_strict, merging, wrap_targets
from suite.methods.api import Method, PrepareContext, Prepared, StepHooks


class ReplacedLinear(nn.Module):
    """A target linear's replacement. Subclasses define `weight_matrix()` (the dense
    d_out x d_in weight) and may override `project(x)` (x W^T without the bias) when the
    factored product is cheaper than materialising W. The bias, where the linear had
    one, is kept (its values from the model's init) and trains."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        bias = linear.bias
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self._merged: torch.Tensor | None = None

    def factory_kwargs(self, linear: nn.Linear) -> dict:
        """New tensors: the base's dtype, on the CPU, where the cell's CPU generator draws
        them (subclasses move themselves to the linear's device when built)."""
        return {"dtype": linear.weight.dtype}

    def weight_matrix(self) -> torch.Tensor:
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_matrix().to(x.dtype))

    @property
    def flop_weights(self) -> tuple[int, int]:
        n = self.in_features * self.out_features
        return n, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._merged is not None:
            bias = self.bias.to(x.dtype) if self.bias is not None else None
            return F.linear(x, self._merged.to(x.dtype), bias)
        out = self.project(x)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Run on the materialised dense W (inference without the factors)."""
        self._merged = self.weight_matrix().detach().clone()

    def unmerge(self) -> None:
        self._merged = None


def check_rank(r: int, linear: nn.Linear, name: str, method: str) -> None:
    """A factorised replacement's rank must fit the target: r <= min(d_out, d_in). The
    plan checks it from the preset's shapes (`rank_fields`); this is the run-time guard
    for a model the plan did not see."""
    k = min(linear.in_features, linear.out_features)
    if r > k:
        raise ValueError(
            f"{method}: r = {r} exceeds min(d_out, d_in) = {k} of target '{name}' "
            f"({linear.out_features} x {linear.in_features}); choose r <= {k}"
        )


def replaced(model: nn.Module) -> list[ReplacedLinear]:
    return [m for m in model.modules() if isinstance(m, ReplacedLinear)]


def replace_targets(
    model: nn.Module, patterns: list[str], factory, train_rest: bool, hooks: StepHooks | None = None
) -> Prepared:
    """Replace every target linear under `model.backbone` by `factory(name, linear)` and
    make the rest of the model trainable (`train_rest`). The saved state is every
    trainable tensor plus the replaced layers' own frozen tensors and buffers (sparse
    supports, frozen singular vectors), so a reloaded model needs no regeneration."""
    wrapped = wrap_targets(model, patterns, factory)
    modules = [m for _, m in wrapped]
    inside = {id(p) for m in modules for p in m.parameters()}
    if train_rest:
        for p in model.parameters():
            if id(p) not in inside:
                p.requires_grad_(True)
    for m in modules:  # the kept bias counts as "the rest"
        if m.bias is not None:
            m.bias.requires_grad_(train_rest)

    def state() -> dict[str, torch.Tensor]:
        own = {id(t) for m in modules for t in [*m.parameters(), *m.buffers()]}
        tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        return {
            n: t.detach().clone()
            for n, t in tensors.items()
            if id(t) in own or (isinstance(t, nn.Parameter) and t.requires_grad)
        }

    merge, unmerge = merging(modules)
    return Prepared(
        model=model,
        hooks=hooks or StepHooks(),
        merge=merge,
        unmerge=unmerge,
        adapter_state=state,
        load_adapter_state=lambda s: load_state_strict(model, s),
    )


class ReplacingMethod(Method):
    """A method that replaces every target linear by one `layer` of rank `params.r`
    (checked against the linear's sides): `layer(linear, params)`, or with `seeded`,
    `layer(linear, params, generator)`, one CPU generator seeded from the cell's seed and
    shared by the layers in module order. `hooks(layers, generator)` adds step hooks
    (the layers list fills as the targets are replaced)."""

    layer: ClassVar[Callable[..., ReplacedLinear]]
    seeded: ClassVar[bool] = False

    def hooks(self, layers: list[ReplacedLinear], gen: torch.Generator | None) -> StepHooks | None:
        return None

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        p = self.params
        gen = ctx.generator() if self.seeded else None
        layers: list[ReplacedLinear] = []

        def factory(name: str, linear: nn.Linear) -> ReplacedLinear:
            check_rank(p.r, linear, name, self.plugin_name())
            layers.append(type(self).layer(linear, p, *([gen] if self.seeded else [])))
            return layers[-1]

        patterns = ctx.preset.resolve_targets(p.targets)
        return replace_targets(model, patterns, factory, p.train_rest, self.hooks(layers, gen))


def spectral_factors(weight: torch.Tensor, r: int) -> tuple[torch.Tensor, ...]:
    """(U_r, S_r, V_r) of the exact SVD of `weight` (d_out x d_in), in fp32: U_r is
    d_out x r, S_r has r values, V_r is d_in x r."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    return u[:, :r], s[:r], vh[:r].T
