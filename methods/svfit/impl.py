"""SVFit: train only the top-r singular values of each frozen weight.

Follows the SVFit paper (arXiv 2409.05926; only its abstract and introduction were
readable, no official code was found): W0 = U_r S_r V_r^T + W_e, U_r, V_r and W_e frozen,
the r singular values s trainable and initialised to S_r, with r the number of top
singular values that capture over 99% of the matrix's information. The paper's text we
could read does not say how that information is measured; by default we sum sigma^2 (the
squared Frobenius norm, what the best rank-r approximation keeps), `energy_of: sigma`
sums the singular values. A fixed `r` replaces the rule (not the paper's).
Written as W = W0 + U_r diag(s - S_r) V_r^T, which is the same matrix and leaves the model
exactly unchanged at init.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, TargetedParams
from suite.methods.lowrank_common import energy_rank


class SVFitParams(TargetedParams):
    rank_fields = ("r",)
    # The paper's rule: keep the top singular values holding more than this share.
    energy: float = Field(default=0.99, gt=0.0, le=1.0)
    energy_of: Literal["sigma_squared", "sigma"] = "sigma_squared"
    # A fixed rank per layer instead of the energy rule (not the paper's rule).
    r: PositiveInt | None = None


def svfit_rank(weight: torch.Tensor, p: SVFitParams) -> tuple[int, tuple[torch.Tensor, ...]]:
    """(r, (U, S, Vh)) for one weight: the fixed r, or the energy rule's."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    r = min(p.r, s.numel()) if p.r is not None else energy_rank(s, p.energy, p.energy_of)
    return r, (u, s, vh)


class SVFitLinear(AdapterLinear):
    """y = W0 x + U_r diag(s - S_r) V_r^T x with only s trainable."""

    def __init__(self, base: nn.Linear, p: SVFitParams):
        super().__init__(base)
        r, (u, s, vh) = svfit_rank(base.weight, p)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.register_buffer("svd_U", u[:, :r].contiguous().to(**like), persistent=False)
        self.register_buffer("svd_Vh", vh[:r].contiguous().to(**like), persistent=False)
        self.register_buffer("sigma0", s[:r].contiguous().to(**like), persistent=False)
        self.sigma = nn.Parameter(s[:r].clone().to(**like))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.linear(x, self.svd_Vh) * (self.sigma - self.sigma0)
        return nn.functional.linear(h, self.svd_U)

    def delta_weight(self) -> torch.Tensor:
        return (self.svd_U * (self.sigma - self.sigma0)) @ self.svd_Vh


class SVFit(LinearAdapterMethod):
    Params = SVFitParams

    layer = SVFitLinear

    def expected_trainable_params(self, shapes) -> int:
        if self.params.r is None:
            raise ValueError(
                "with the energy rule SVFit's count depends on each weight's spectrum, "
                "not on its shape; set a fixed r for a shape formula"
            )
        return sum(min(self.params.r, d_out, d_in) for d_out, d_in in shapes)
