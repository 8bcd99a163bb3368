"""LoLDU: train the diagonal of an LDU decomposition of W0 (optionally one scale per layer).

Follows SKDDJ/LoLDU minloldu/loldu.py (ldu_decomposition, LoLDUParametrization with
init_loldu_weights 'ldu' and init_method 'lu'): W0 = P L D U (partial-pivoting LU, U
normalised to a unit diagonal), keep the first r columns of L and rows of U,
W_res = W0 - s P L_r diag(D_r) U_r, W = W_res + s P L_r diag(z) U_r with z = D_r and
s = alpha / r at init, so the model is unchanged. As in the official optimiser
(loldu_utils.get_loldu_params) only z trains; `train_scale: true` also trains s.
"""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, TargetedParams
from suite.methods.lowrank_common import ldu


class LoLDUParams(TargetedParams):
    rank_fields = ("r",)
    r: PositiveInt = 8
    alpha: PositiveFloat = 1.0
    # The repo's get_loldu_params hands only vector_z to its optimiser (the scale is an
    # nn.Parameter there, but never optimised). True: also train the scale (not official).
    train_scale: bool = False


class LoLDULinear(AdapterLinear):
    """W = W_res + s P L_r diag(z) U_r; W_res replaces the base weight at init."""

    def __init__(self, base: nn.Linear, p: LoLDUParams):
        super().__init__(base)
        perm, lower, diag, upper = ldu(base.weight)
        r = min(p.r, diag.numel())
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.register_buffer("perm", perm.to(like["device"]), persistent=False)
        self.register_buffer("lower", lower[:, :r].contiguous().to(**like), persistent=False)
        self.register_buffer("upper", upper[:r].contiguous().to(**like), persistent=False)
        self.vector_z = nn.Parameter(diag[:r].clone().to(**like))
        self.scaling_factor = nn.Parameter(
            torch.tensor(p.alpha / p.r, **like), requires_grad=p.train_scale
        )
        with torch.no_grad():
            base.weight.copy_((base.weight.float() - self.delta_weight().float()).to(**like))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.linear(x, self.upper) * self.vector_z
        out = nn.functional.linear(h, self.lower) * self.scaling_factor
        # (P v)[i] = v[perm[i]]: the permutation matrix is applied as a gather.
        return out.index_select(-1, self.perm)

    def delta_weight(self) -> torch.Tensor:
        low_rank = (self.lower * self.vector_z) @ self.upper * self.scaling_factor
        return low_rank[self.perm]


class LoLDU(LinearAdapterMethod):
    Params = LoLDUParams

    layer = LoLDULinear

    def expected_trainable_params(self, shapes) -> int:
        per_layer = [min(self.params.r, d_out, d_in) for d_out, d_in in shapes]
        return sum(per_layer) + (len(shapes) if self.params.train_scale else 0)
