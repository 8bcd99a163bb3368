"""Hydra: a parallel and a sequential low-rank branch on the same frozen linear.

Follows extremebird/Hydra elevater/vision_benchmark/evaluation/Hydra_model.py (Hydra
module with init_option 'lora', HydraMLP): y = W0 x + b0 + s P(x) + s Q(W0 x + b0) with
P(x) = B_p(A_p x + a_p) + b_p and Q likewise; down-projections N(0, 0.02^2), up-projections
and all biases zero, s = 1. Merged: W = W0 + s(B_p A_p + B_s A_s W0), plus the matching
bias b0 + s(B_p a_p + b_p + B_s A_s b0 + B_s a_s + b_s).
"""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, TargetedParams


class HydraParams(TargetedParams):
    rank_fields = ("r_par", "r_seq")
    r_par: PositiveInt = 8
    r_seq: PositiveInt = 8
    scale: PositiveFloat = 1.0
    init_std: PositiveFloat = 0.02
    # The paper and both official code paths adapt the MLP's second projection.
    targets: str | list[str] = ["re:.*layer\\.\\d+\\.output\\.dense"]


def branch(d_in: int, d_out: int, r: int, std: float, gen: torch.Generator, like) -> nn.Sequential:
    """down (d_in -> r, N(0, std^2), zero bias) then up (r -> d_out, all zero)."""
    down, up = nn.Linear(d_in, r, **like), nn.Linear(r, d_out, **like)
    with torch.no_grad():
        down.weight.copy_(torch.randn(r, d_in, generator=gen) * std)
        for t in (down.bias, up.weight, up.bias):
            t.zero_()
    return nn.Sequential(down, up)


class HydraLinear(AdapterLinear):
    """y = base(x) + s par(x) + s seq(base(x)); merge folds both into weight and bias."""

    def __init__(self, base: nn.Linear, p: HydraParams, gen: torch.Generator):
        super().__init__(base)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        d_in, d_out = base.in_features, base.out_features
        self.scaling = p.scale
        self.hydra_par = branch(d_in, d_out, p.r_par, p.init_std, gen, like)
        self.hydra_seq = branch(d_out, d_out, p.r_seq, p.init_std, gen, like)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        xa, base_out = self.adapter_input(x), self.adapter_input(out)
        return (out + self.scaling * (self.hydra_par(xa) + self.hydra_seq(base_out))).to(out.dtype)

    def delta_weight(self) -> torch.Tensor:
        (ap, bp), (as_, bs) = self.hydra_par, self.hydra_seq
        seq = bs.weight @ as_.weight
        return self.scaling * (bp.weight @ ap.weight + seq @ self.base.weight)

    def delta_bias(self) -> torch.Tensor:
        (ap, bp), (as_, bs) = self.hydra_par, self.hydra_seq
        b0 = self.base.bias if self.base.bias is not None else torch.zeros_like(bp.bias)
        par = bp.weight @ ap.bias + bp.bias
        seq = bs.weight @ (as_.weight @ b0 + as_.bias) + bs.bias
        return self.scaling * (par + seq)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        if self.base.bias is None:
            self.base.bias = nn.Parameter(torch.zeros_like(self.hydra_par[1].bias), False)
            self._added_bias = True
        self._unmerged_bias = self.base.bias.detach().clone()
        bias = self.base.bias + self.delta_bias()  # from the unmerged bias
        super().merge()
        self.base.bias.copy_(bias)

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        super().unmerge()
        self.base.bias.copy_(self._unmerged_bias)
        del self._unmerged_bias
        if getattr(self, "_added_bias", False):
            self.base.bias = None
            self._added_bias = False


class Hydra(LinearAdapterMethod):
    Params = HydraParams

    layer = HydraLinear
    seeded = True

    def expected_trainable_params(self, shapes) -> int:
        rp, rs = self.params.r_par, self.params.r_seq
        return sum(
            rp * (d_in + 1) + d_out * rp + d_out + rs * (d_out + 1) + d_out * rs + d_out
            for d_out, d_in in shapes
        )
