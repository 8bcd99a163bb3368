"""Shared machinery of the optimiser methods (GaLore, DCT-AdamW, FRUGAL).

These methods change the optimiser, not the model: every weight trains, and
`Prepared.make_optimizer` builds the method's own optimiser. The training driver hands
that hook the tensors it steps, named like the model's parameters (fp32 master copies
on a bf16/fp16 base, the parameters themselves otherwise), so the projected set is
chosen by name: the 2-D weights of the preset's target modules (`attention` and `mlp`
by default, as the official scripts select "attn"/"mlp" or BERT's query/key/value/
dense). Everything else (embeddings, norms, biases, the task head) gets the same
optimiser's plain full-state AdamW path, as in the official scripts.

Groups follow the driver's convention: no weight decay on tensors under 2-D.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from suite.methods.adapters import load_state_strict, trainable_state
from suite.methods.api import Method, PrepareContext, Prepared
from suite.methods.targets import find_targets


def projected_names(model: nn.Module, patterns: list[str]) -> list[str]:
    """Parameter names (as `model.named_parameters()` gives them) of the 2-D weights of
    the linear modules under `model.backbone` matching `patterns`, in module order."""
    wanted = {id(m.weight) for _, m in find_targets(model.backbone, patterns)}
    return [n for n, p in model.named_parameters() if id(p) in wanted and p.ndim == 2]


def target_shapes(model: nn.Module, names: list[str]) -> dict[str, tuple[int, int]]:
    params = dict(model.named_parameters())
    return {n: tuple(params[n].shape) for n in names}


def split_groups(
    named: list[tuple[str, nn.Parameter]],
    projected: set[str],
    weight_decay: float,
    projected_options: dict[str, Any],
) -> list[dict[str, Any]]:
    """[regular decaying, regular non-decaying, projected] groups, empty ones dropped.

    The projected group carries `projected_options` (its rank, refresh gap, ...), which
    the method's optimiser reads per group, as galore-torch and FRUGAL do."""
    regular_decay = [p for n, p in named if n not in projected and p.ndim >= 2]
    regular_flat = [p for n, p in named if n not in projected and p.ndim < 2]
    proj = [p for n, p in named if n in projected]
    if not proj:
        raise ValueError(
            "none of the optimiser's tensors is a projected target weight: the targets "
            "matched no trainable 2-D weight"
        )
    groups = [
        {"params": regular_decay, "weight_decay": weight_decay},
        {"params": regular_flat, "weight_decay": 0.0},
        {"params": proj, "weight_decay": weight_decay, **projected_options},
    ]
    return [g for g in groups if g["params"]]


def optimizer_prepared(
    model: nn.Module, make_optimizer: Callable[..., torch.optim.Optimizer] | None = None
) -> Prepared:
    """Every weight trains (the whole model is the 'adapter'); the optimiser is the
    method's, or without `make_optimizer` the engine's AdamW (full fine-tuning)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return Prepared(
        model=model,
        adapter_state=lambda: trainable_state(model),
        load_adapter_state=lambda s: load_state_strict(model, s),
        make_optimizer=make_optimizer,
    )


def projected_optimizer(
    model: nn.Module,
    patterns: list[str],
    options: dict[str, Any],
    build: Callable[[list[dict[str, Any]], float], torch.optim.Optimizer],
    rank_of: tuple[int, str] | None = None,
) -> Prepared:
    """Every weight trains under the method's optimiser, `build(groups, lr)`, whose
    projected group holds the 2-D weights of the modules `patterns` match and carries
    `options`. `rank_of = (rank, method)`: the rank must fit every projected weight."""
    names = projected_names(model, patterns)
    if rank_of is not None:
        check_rank(target_shapes(model, names), *rank_of)

    def make_optimizer(named, lr, weight_decay):
        return build(split_groups(named, set(names), weight_decay, options), lr)

    return optimizer_prepared(model, make_optimizer)


OptimizerFactory = Callable[[list[dict[str, Any]], float], torch.optim.Optimizer]


class OptimizerMethod(Method):
    """A method that changes only the optimiser (GaLore, DCT-AdamW, FRUGAL): every weight
    trains under `optimizer(ctx)(groups, lr)`, whose projected group holds the 2-D weights
    of the Params' `targets` and carries the Params fields `group_fields` (plus
    `group_flags`), which the optimiser reads per group as the references do. With
    `checks_rank`, the Params' `rank` must be below every projected weight's smaller side."""

    group_fields: ClassVar[tuple[str, ...]] = ()
    group_flags: ClassVar[dict[str, Any]] = {}
    checks_rank: ClassVar[bool] = False

    def optimizer(self, ctx: PrepareContext) -> OptimizerFactory:
        raise NotImplementedError

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        p = self.params
        options = self.group_flags | {name: getattr(p, name) for name in self.group_fields}
        rank_of = (p.rank, self.plugin_name()) if self.checks_rank else None
        patterns = ctx.preset.resolve_targets(p.targets)
        return projected_optimizer(model, patterns, options, self.optimizer(ctx), rank_of)

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError(
            f"{self.plugin_name()} trains every weight; it changes the optimiser only"
        )


def with_grads(
    optimizer: torch.optim.Optimizer,
) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
    """(group, tensor) for every tensor of `optimizer` that has a gradient this step, in
    group order: the walk every optimiser's step makes (a tensor without a gradient keeps
    its value and state, as in torch's AdamW)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                yield group, p


def update_moments(
    m: torch.Tensor, v: torch.Tensor, grad: torch.Tensor, betas: tuple[float, float]
) -> None:
    """Adam's moments in place: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2. Every
    optimiser method shares them; each keeps its own reference's bias correction and eps
    placement (galore-torch, FRUGAL and DCT-AdamW differ there)."""
    beta1, beta2 = betas
    m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)


def check_rank(shapes: dict[str, tuple[int, int]], rank: int, method: str) -> None:
    """A projection rank must be below every projected matrix's smaller side."""
    for name, shape in shapes.items():
        if rank >= min(shape):
            raise ValueError(
                f"{method}: rank {rank} is not below the smaller side of {name} "
                f"{tuple(shape)}; the projected state would not be smaller than AdamW's"
            )
