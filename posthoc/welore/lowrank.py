"""Low-rank compression by WeLore's rank rule (VITA-Group/WeLore@3f3dac6).

Per matrix W (m x n), from the fp32 singular values s: normalise s_hat = (s - min s) /
(max s - min s); the matrix loses pruned_k = #{s_hat < tau} ranks and keeps k =
min(m, n) - pruned_k (utils.py `adaptive_rank_pruning`). tau is one threshold for the
whole model. A matrix that loses more than `min_ratio` of its rank (0.0 in the
rank-reduction script, 0.4999 in the fine-tuning scripts) becomes a low-rank layer
U = U_k sqrt(S_k) (m x k), V = sqrt(S_k) V_k^T (k x n); the others stay dense
(lib/rank_reduction.py `do_rank_reduction`, lib/LowRankLayer.py).

The reference tabulates tau only for LLaMA-2 7B/13B (a rank reduction of 50% is tau =
0.135 on 7B). For other models `threshold_for` finds the smallest tau that reaches a
target reduction over the targeted matrices (the project's reading, [INFER] in the
research review).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def singular_values(weight: torch.Tensor) -> torch.Tensor:
    """fp32 singular values, largest first (the reference's `torch.svd(W.float())`)."""
    return torch.linalg.svdvals(weight.detach().float())


def normalised(s: torch.Tensor) -> torch.Tensor:
    return (s - s.min()) / (s.max() - s.min())


def pruned_rank(s: torch.Tensor, tau: float) -> int:
    """How many ranks the matrix loses at threshold `tau`."""
    return int((normalised(s) < tau).sum())


def threshold_for(spectra: list[torch.Tensor], reduction: float) -> float:
    """The smallest tau whose total pruned rank reaches `reduction` of the total rank."""
    pooled = torch.sort(torch.cat([normalised(s) for s in spectra]))[0]
    need = int(torch.ceil(torch.tensor(reduction * len(pooled))).item())
    if need <= 0:
        return 0.0
    # Counting s_hat < tau: tau just above the need-th smallest value prunes exactly those
    # (and any exact ties with it).
    return float(torch.nextafter(pooled[need - 1], torch.tensor(float("inf"))))


def low_rank_factors(weight: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """U_k sqrt(S_k) (m x k) and sqrt(S_k) V_k^T (k x n), in fp32."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    root = s[:k].sqrt()
    return u[:, :k] * root, root[:, None] * vh[:k]


class LowRankLinear(nn.Module):
    """y = U (V x) + b: a dense linear replaced by its rank-k factors (the bias kept;
    the reference's LLaMA projections have none)."""

    def __init__(self, base: nn.Linear, k: int):
        super().__init__()
        up, down = low_rank_factors(base.weight, k)
        dtype, device = base.weight.dtype, base.weight.device
        self.in_features, self.out_features, self.rank = base.in_features, base.out_features, k
        self.V = nn.Linear(base.in_features, k, bias=False, dtype=dtype, device=device)
        self.U = nn.Linear(
            k, base.out_features, bias=base.bias is not None, dtype=dtype, device=device
        )
        with torch.no_grad():
            self.V.weight.copy_(down.to(dtype))
            self.U.weight.copy_(up.to(dtype))
            if base.bias is not None:
                self.U.bias.copy_(base.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.U(self.V(x))


@dataclass(frozen=True)
class RankDecision:
    """One matrix's fate: its full rank, the ranks it loses, whether it becomes low-rank."""

    name: str
    rank: int
    pruned: int
    low_rank: bool

    @property
    def kept(self) -> int:
        return self.rank - self.pruned if self.low_rank else self.rank


def welore_plan(
    weights: list[tuple[str, torch.Tensor]], tau: float, min_ratio: float
) -> list[RankDecision]:
    """WeLore's decision for every matrix at threshold `tau` (see the module doc)."""
    plan = []
    for name, weight in weights:
        rank = min(weight.shape)
        pruned = pruned_rank(singular_values(weight), tau)
        plan.append(RankDecision(name, rank, pruned, pruned / rank > min_ratio))
    return plan


def apply_plan(root: nn.Module, plan: list[RankDecision]) -> None:
    """Replace every matrix the plan makes low-rank by its LowRankLinear."""
    from suite.methods.targets import replace_module

    for decision in plan:
        if decision.low_rank:
            base = root.get_submodule(decision.name)
            replace_module(root, decision.name, LowRankLinear(base, decision.kept))
