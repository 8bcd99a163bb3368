"""CAST (reconstructed): N:M sparsity reached during training by selective L1 decay.

Every targeted linear keeps its dense weight W and gains a per-output-row scale s
(the Weight Scaling module, init 1): y = (s * W) x + b, so decay that shrinks W's
magnitudes can be compensated without touching the zeros. Every `mask_interval` steps
(and at the start) each row's groups of m consecutive inputs keep their n largest |W|
(the mask); after every optimiser step, AdamS's decoupled L1 decay acts on the entries
outside the mask only, as a proximal step that stops at zero:
w <- sign(w) max(|w| - lr_t lambda_t, 0), with lambda_t rising linearly from 0 to
`l1` over the run. At the end the mask is recomputed and the entries outside it are
set to zero, so the trained weight holds the n:m pattern exactly.
"""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt, model_validator
from torch import nn

from suite.methods.api import Method, MethodParams, Prepared, StepHooks
from suite.methods.pretrain import ReplacedLinear, replace_targets


class CASTParams(MethodParams):
    n: PositiveInt = 2
    m: PositiveInt = 4
    # The final lambda of the linear L1 ramp (this project's choice; see method.yaml).
    l1: PositiveFloat = 1.0
    # The mask refresh period T_1 = 10 of the paper.
    mask_interval: PositiveInt = 10
    scale: bool = True
    targets: str | list[str] = "all-linear"
    train_rest: bool = True

    @model_validator(mode="after")
    def _n_below_m(self) -> CASTParams:
        if self.n >= self.m:
            raise ValueError(f"n = {self.n} must be below m = {self.m} (keep n of every m)")
        return self

    def shape_issues(self, shapes):
        issues = super().shape_issues(shapes)
        bad = [s for s in shapes if s[1] % self.m]
        if bad:
            issues["m"] = (
                f"m = {self.m} does not divide d_in of a targeted {bad[0][0]} x {bad[0][1]} weight"
            )
        return issues


def nm_keep(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """True for the n largest |w| of every group of m consecutive inputs of each row."""
    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // m, m)
    top = groups.topk(n, dim=-1, sorted=False).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return keep.reshape(rows, cols)


def l1_prox(weight: torch.Tensor, outside: torch.Tensor, amount: float) -> None:
    """In place: entries outside the mask move `amount` towards zero, never past it."""
    w = weight[outside]
    weight[outside] = w.sign() * (w.abs() - amount).clamp_min(0)


class CASTLinear(ReplacedLinear):
    def __init__(self, linear: nn.Linear, p: CASTParams):
        super().__init__(linear)
        self.weight = nn.Parameter(linear.weight.detach().clone())
        scale = torch.ones(
            self.out_features, dtype=linear.weight.dtype, device=linear.weight.device
        )
        self.scale = nn.Parameter(scale, requires_grad=p.scale)
        self.register_buffer("keep", nm_keep(self.weight, p.n, p.m))

    def weight_matrix(self) -> torch.Tensor:
        return self.scale[:, None] * self.weight


class CASTHooks(StepHooks):
    def __init__(self, layers: list[CASTLinear], p: CASTParams):
        self.layers, self.p = layers, p
        self.total = 1
        self.optimizer: torch.optim.Optimizer | None = None

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def on_train_start(self, total_steps: int) -> None:
        self.total = max(total_steps, 1)

    def _lr(self, param: nn.Parameter) -> float:
        assert self.optimizer is not None, "the trainer binds its optimiser first"
        for group in self.optimizer.param_groups:
            if any(q is param for q in group["params"]):
                return float(group["lr"])
        return 0.0

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        p = self.p
        ramp = p.l1 * min(1.0, (step + 1) / self.total)
        for layer in self.layers:
            if step % p.mask_interval == 0:
                layer.keep.copy_(nm_keep(layer.weight, p.n, p.m))
            l1_prox(layer.weight, ~layer.keep, self._lr(layer.weight) * ramp)

    @torch.no_grad()
    def on_train_end(self) -> None:
        for layer in self.layers:
            layer.keep.copy_(nm_keep(layer.weight, self.p.n, self.p.m))
            layer.weight[~layer.keep] = 0


class CAST(Method):
    Params = CASTParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        layers: list[CASTLinear] = []

        def factory(name: str, linear: nn.Linear) -> CASTLinear:
            if linear.in_features % p.m:
                raise ValueError(
                    f"cast: m = {p.m} does not divide d_in = {linear.in_features} of '{name}'"
                )
            layers.append(CASTLinear(linear, p))
            return layers[-1]

        hooks = CASTHooks(layers, p)
        return replace_targets(model, patterns, factory, p.train_rest, hooks)

    def expected_trainable_params(self, shapes) -> int:
        rows = sum(d_out for d_out, _ in shapes) if self.params.scale else 0
        return sum(d_out * d_in for d_out, d_in in shapes) + rows
