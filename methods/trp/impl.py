"""Trained Rank Pruning (TRP): every target weight trains in full, but every `period`
steps it is replaced by its truncated SVD, and a nuclear-norm subgradient joins its
gradient (yuhuixu1993/Trained-Rank-Pruning@8cc7470, cifar-TRP.py low_rank_approx and
train(), decompose.py EnergyThreshold / ValueThreshold / channel_decompose).

- Every `period` steps, before the forward (low_rank_approx, type 'NC': a weight as
  d_out x d_in): W = U S V^T; keep the first r components, r the smallest count whose
  squared singular values hold `energy` of the total (EnergyThreshold(0.9)); W <- U_r
  S_r V_r^T; the subgradient of the nuclear norm is U_r V_r^T.
- On those same steps, after backward: grad(W) += nuclear_weight * U_r V_r^T.
- At the end (channel_decompose with ValueThreshold): keep the leading singular values
  >= final_threshold; W becomes N C with N = U_r sqrt(S_r), C = sqrt(S_r) V_r^T. The
  row's trainable count is the trained rank's r (d_in + d_out) (+ W's bias).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    TargetedParams,
    load_state_strict,
    trainable_state,
    wrap_targets,
)
from suite.methods.api import Method, PrepareContext, Prepared, StepHooks


class TRPParams(TargetedParams):
    energy: float = Field(default=0.9, gt=0.0, lt=1.0)
    period: PositiveInt = 1
    nuclear_weight: NonNegativeFloat = 3e-4
    project: bool = True  # the reference's --trp; false: nuclear regularisation alone
    final_threshold: NonNegativeFloat = 0.05
    decompose_at_end: bool = True


def energy_rank(sigma: torch.Tensor, energy: float) -> int:
    """EnergyThreshold: the smallest r whose sigma_1..r^2 hold `energy` of the sum."""
    share = sigma.pow(2).cumsum(0) / sigma.pow(2).sum()
    reached = torch.nonzero(share >= energy)
    return int(reached[0]) + 1 if len(reached) else sigma.numel()


def value_rank(sigma: torch.Tensor, threshold: float) -> int:
    """ValueThreshold: the count of leading (descending) singular values >= threshold."""
    below = torch.nonzero(sigma < threshold)
    return int(below[0]) if len(below) else sigma.numel()


class TRPLinear(nn.Module):
    """A target linear whose full weight trains (fp32); `rank` is the trained rank once
    decomposed at the end (-1 before)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().float().clone())
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone())
        self.register_buffer("rank", torch.tensor(-1, device=linear.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)

    @torch.no_grad()
    def approximate(self, energy: float, project: bool) -> torch.Tensor:
        """low_rank_approx on this weight: project it (if `project`); return U_r V_r^T."""
        u, s, vh = torch.linalg.svd(self.weight, full_matrices=False)
        r = energy_rank(s, energy)
        if project:
            self.weight.copy_((u[:, :r] * s[:r]) @ vh[:r])
        return u[:, :r] @ vh[:r]

    @torch.no_grad()
    def decompose(self, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """channel_decompose: (N, C) at the value threshold; W <- N C; rank recorded."""
        u, s, vh = torch.linalg.svd(self.weight, full_matrices=False)
        r = value_rank(s, threshold)
        root = s[:r].sqrt()
        n, c = u[:, :r] * root, root[:, None] * vh[:r]
        self.weight.copy_(n @ c)
        self.rank.fill_(r)
        return n, c

    def trained_count(self) -> int:
        bias = 0 if self.bias is None else self.out_features
        r = int(self.rank)
        full = self.in_features * self.out_features
        return bias + (full if r < 0 else r * (self.in_features + self.out_features))


class _TRP(StepHooks):
    """Projection before the forward of every `period`-th step, the subgradient after
    its backward, the value-threshold decomposition at the end."""

    def __init__(self, layers: list[TRPLinear], p: TRPParams):
        self.layers, self.p = layers, p
        self.subs: list[torch.Tensor] = []
        self.total = 0

    def _approximate(self) -> None:
        self.subs = [m.approximate(self.p.energy, self.p.project) for m in self.layers]

    def on_train_start(self, total_steps: int) -> None:
        self.total = total_steps
        self._approximate()  # step 0 is a multiple of every period

    def after_backward(self, step: int) -> None:
        if self.p.nuclear_weight and step % self.p.period == 0:
            for m, sub in zip(self.layers, self.subs, strict=True):
                m.weight.grad.add_(self.p.nuclear_weight * sub)

    def after_optimizer_step(self, step: int) -> None:
        nxt = step + 1
        if nxt < self.total and nxt % self.p.period == 0:
            self._approximate()  # before the next step's forward, as low_rank_approx

    def on_train_end(self) -> None:
        if self.p.decompose_at_end:
            for m in self.layers:
                m.decompose(self.p.final_threshold)


class TRP(Method):
    Params = TRPParams

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        layers = [m for _, m in wrap_targets(model, patterns, lambda _, linear: TRPLinear(linear))]

        def adapter_state() -> dict[str, torch.Tensor]:
            ranks = {
                n: b.clone() for n, b in model.named_buffers() if any(b is m.rank for m in layers)
            }
            return trainable_state(model) | ranks

        return Prepared(
            model=model,
            hooks=_TRP(layers, p),
            adapter_state=adapter_state,
            load_adapter_state=lambda state: load_state_strict(model, state),
            trainable_count=lambda: sum(m.trained_count() for m in layers),
        )

    def expected_trainable_params(self, shapes) -> int:
        """Every target weight and its bias (the tiny models' linears have one), before
        the end's decomposition."""
        return sum(d_out * d_in + d_out for d_out, d_in in shapes)
