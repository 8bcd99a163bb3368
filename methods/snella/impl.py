"""SNELLA: SNELL's kernelised sparse update with a mixed nonlinear kernel and an adaptive
bi-level sparsity allocation, after ssfgunner/SNELL (model/vision_transformer_timm.py
class SNELLA; sparse_allocator.py class Allocator; train_alloc.py / engine.py).

Within a layer (as SNELL, suite/methods/kernelized.py): K = sum_h c_h cdist_2(In_Qs[h],
Out_Qs[h]), now passed through a learnt nonlinearity K' = K + alpha softmax(K / gamma)
+ beta (softmax over the output axis; alpha, gamma, beta trainable scalars at 1, 1, 0),
and dW^T = K' * stopgrad(|K'| 1[|K'| > quantile(|K'|, s_l)]): entries compete inside the
layer for its 1 - s_l share of kept slots.

Across layers: an importance score per factor entry, I = |theta * grad| (after each
optimiser step), smoothed as AdaLoRA does (Ibar <- b1 Ibar + (1 - b1) I, U <- b2 U + (1 -
b2) |I - Ibar|), gives each layer the score mean(Ibar U | In_Qs) + mean(Ibar U | Out_Qs).
At the start of each allocation round r of R (the reference's epochs) the kept-entry
budget follows AdaLoRA's cubic schedule from sum (1 - s_0) d_in d_out down to sum (1 -
s_target) d_in d_out, and is shared among the layers in proportion to their normalised
scores (capped at each layer's size, the remainder handed on); each layer's s_l becomes
1 - budget_l / (d_in d_out). Layers thus compete for the budget with each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import adapter_prepared, wrap_targets
from suite.methods.api import Method, Prepared, StepHooks
from suite.methods.kernelized import KernelizedParams, SNELLLinear, sparsify


class SNELLAParams(KernelizedParams):
    q: PositiveInt = 32  # low_rank_dim of every SNELLA script
    init_sparsity: float = Field(default=0.01, ge=0.0, lt=1.0)  # init_thres (VTAB scripts)
    target_sparsity: float = Field(default=0.6, ge=0.0, lt=1.0)  # target_ratio (0.2-0.93)
    coeff: PositiveFloat = 0.1
    beta1: float = Field(default=0.85, gt=0.0, lt=1.0)
    beta2: float = Field(default=0.85, gt=0.0, lt=1.0)
    init_warmup: NonNegativeInt = 0  # in rounds, as the reference's epochs
    final_warmup: NonNegativeInt = 0
    mask_interval: PositiveInt = 1
    rounds: PositiveInt = 100  # allocation rounds (the reference: one per epoch, 100 epochs)


class SNELLALinear(SNELLLinear):
    """SNELL's layer with the mixed kernel K + alpha softmax(K / gamma) + beta, always
    sparsified (at its current sparsity, which the allocator moves)."""

    def __init__(self, base: nn.Linear, p: SNELLAParams):
        super().__init__(base, p.q, p.kernels, p.init_sparsity, 2.0, p.coeff)
        dtype, device = base.weight.dtype, base.weight.device
        self.alpha = nn.Parameter(torch.ones(1, dtype=dtype, device=device))
        self.gamma = nn.Parameter(torch.ones(1, dtype=dtype, device=device))
        self.beta = nn.Parameter(torch.zeros(1, dtype=dtype, device=device))

    def kernel(self) -> torch.Tensor:
        k = super().kernel()
        return k + self.alpha * F.softmax(k / self.gamma, dim=-1) + self.beta

    def delta_weight(self) -> torch.Tensor:
        return sparsify(self.kernel(), self.sparsity).T


def allocate(scores: torch.Tensor, volume: int, caps: torch.Tensor) -> torch.Tensor:
    """Allocator.param_alloc: volume * score per layer (truncated), capped at each layer's
    size; what is left goes to the layers with room, in proportion to their scores."""
    alloc = torch.min(caps, (volume * scores).squeeze().int())
    delta = volume - torch.sum(alloc)
    while delta > 0:
        room = caps - alloc
        idx = torch.nonzero(room).squeeze()
        share = (delta * scores[idx] / torch.sum(scores[idx])).squeeze()
        alloc[idx] += torch.min(share, room[idx])
        delta = volume - torch.sum(alloc)
    return alloc.int()


class BiLevelAllocator(StepHooks):
    """The reference's Allocator: importance EMAs every step, a budget round at the start
    of each of `rounds` equal spans of the run."""

    def __init__(self, layers: list[tuple[str, SNELLALinear]], p: SNELLAParams):
        self.layers, self.p = layers, p
        sizes = [m.in_features * m.out_features for _, m in layers]
        self.caps = torch.tensor(sizes, dtype=torch.float32)
        self.init_volume = sum((1 - p.init_sparsity) * s for s in sizes)
        self.target_volume = sum((1 - p.target_sparsity) * s for s in sizes)
        self.ema_ipt: dict[int, torch.Tensor] = {}
        self.ema_unc: dict[int, torch.Tensor] = {}
        self.total_steps, self.round_count, self.last_round = 1, p.rounds, -1
        self.history: list[dict[str, float]] = []  # each layer's sparsity from each round on

    def on_train_start(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.round_count = min(self.p.rounds, total_steps)
        self._maybe_round(0)

    def after_optimizer_step(self, step: int) -> None:
        self.update_importance()
        self._maybe_round(step + 1)

    def _maybe_round(self, step: int) -> None:
        if step >= self.total_steps:
            return
        r = step * self.round_count // self.total_steps
        if r != self.last_round:
            self.last_round = r
            self.budget_round(r)

    def schedule(self, r: int) -> tuple[float, bool]:
        """Allocator.schedule_threshold over rounds: (kept-entry budget, allocate now?)."""
        p, total = self.p, self.round_count
        if r <= p.init_warmup:
            return self.init_volume, False
        if r > total - p.final_warmup:
            return self.target_volume, True
        coeff = 1 - (r - p.init_warmup) / (total - p.final_warmup - p.init_warmup)
        volume = self.target_volume + (self.init_volume - self.target_volume) * coeff**3
        return int(volume), r % p.mask_interval == 0

    @torch.no_grad()
    def update_importance(self) -> None:
        b1, b2 = self.p.beta1, self.p.beta2
        for _, m in self.layers:
            for t in (m.in_qs, m.out_qs):
                if t.grad is None:
                    continue
                ipt = (t * t.grad).abs().detach()
                ipt = torch.where(torch.isnan(ipt), torch.zeros_like(ipt), ipt)
                old = self.ema_ipt.get(id(t), torch.zeros_like(t))
                self.ema_ipt[id(t)] = b1 * old + (1 - b1) * ipt
                unc = self.ema_unc.get(id(t), torch.zeros_like(t))
                self.ema_unc[id(t)] = b2 * unc + (1 - b2) * (ipt - self.ema_ipt[id(t)]).abs()

    def layer_score(self, m: SNELLALinear) -> float:
        total = 0.0
        for t in (m.in_qs, m.out_qs):
            ipt = self.ema_ipt.get(id(t), torch.zeros_like(t))
            total += float((ipt * self.ema_unc.get(id(t), torch.zeros_like(t))).mean())
        return total

    def budget_round(self, r: int) -> None:
        volume, allocate_now = self.schedule(r)
        if allocate_now:
            self.reallocate(volume)
        self.history.append({name: m.sparsity for name, m in self.layers})

    def reallocate(self, volume: float) -> None:
        scores = torch.tensor([self.layer_score(m) for _, m in self.layers])
        total = torch.sum(scores)
        scores = scores / total if total != 0 else torch.full_like(scores, 1 / len(scores))
        alloc = allocate(scores, volume, self.caps)
        for (_, m), kept in zip(self.layers, alloc.tolist(), strict=True):
            m.sparsity = min(max(1 - float(kept / (m.in_features * m.out_features)), 0), 1)


class SNELLA(Method):
    Params = SNELLAParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        layers = wrap_targets(model, patterns, lambda _, lin: SNELLALinear(lin, p))
        return adapter_prepared(model, hooks=BiLevelAllocator(layers, p))

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.q * (d_in + d_out) + 3 for d_out, d_in in shapes)
