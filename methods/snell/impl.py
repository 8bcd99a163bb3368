"""SNELL: a kernelised dense update from two factor matrices, sparsified by competition.

Follows ssfgunner/SNELL `model/vision_transformer_timm.py`: `SNELL` (and `KLoRA` when the
sparsity is 0). Each layer holds In_Qs (H x d_in x q/H) and Out_Qs (H x d_out x q/H),
Kaiming-uniform; the update is K = sum_h c_h cdist_p(In_Qs[h], Out_Qs[h]) (d_in x d_out)
with fixed c_h = 0.1 (-1)^h, so a nonlinear kernel of the factors rather than their
product. `sparsify` keeps the entries whose |K| exceeds the `sparsity` quantile, and
weights them by their detached magnitude: dW^T = K * stopgrad(|K| 1[|K| > thr]); the
entries compete for the kept slots at every step, and nothing but the factors is stored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, TargetedParams

# torch.quantile refuses inputs above 2**24 elements; larger matrices use kthvalue.
_QUANTILE_LIMIT = 2**24


class SNELLParams(TargetedParams):
    q: PositiveInt = 8
    kernels: PositiveInt = 2
    sparsity: float = Field(default=0.5, ge=0.0, lt=1.0)
    norm_p: PositiveFloat = 2.0
    coeff: PositiveFloat = 0.1


def magnitude_threshold(values: torch.Tensor, quantile: float) -> torch.Tensor:
    flat = values.reshape(-1)
    if flat.numel() <= _QUANTILE_LIMIT:
        return torch.quantile(flat, quantile)
    return torch.kthvalue(flat, max(1, int(quantile * flat.numel()))).values


class SNELLLinear(AdapterLinear):
    def __init__(self, base: nn.Linear, p: SNELLParams):
        super().__init__(base)
        if p.q % p.kernels:
            raise ValueError(f"q={p.q} must be a multiple of kernels={p.kernels}")
        self.sparsity, self.norm_p = p.sparsity, p.norm_p
        dtype, device = base.weight.dtype, base.weight.device
        width = p.q // p.kernels
        self.in_qs = nn.Parameter(torch.empty(p.kernels, base.in_features, width, dtype=dtype))
        self.out_qs = nn.Parameter(torch.empty(p.kernels, base.out_features, width, dtype=dtype))
        signs = torch.tensor([(-1.0) ** h for h in range(p.kernels)], dtype=dtype)
        self.register_buffer("coeff", (p.coeff * signs).view(-1, 1, 1), persistent=False)
        nn.init.kaiming_uniform_(self.in_qs, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.out_qs, a=math.sqrt(5))
        self.to(device)

    def kernel(self) -> torch.Tensor:
        """K (d_in x d_out): the mixed distance kernel of the two factor matrices."""
        dist = torch.cdist(self.in_qs, self.out_qs, p=self.norm_p)
        return torch.sum(self.coeff * dist, dim=0)

    def delta_weight(self) -> torch.Tensor:
        k = self.kernel()
        if self.sparsity > 0:
            magnitude = k.detach().abs()
            k = k * F.threshold(magnitude, float(magnitude_threshold(magnitude, self.sparsity)), 0)
        return k.T

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight().to(x.dtype))


class SNELL(LinearAdapterMethod):
    Params = SNELLParams

    layer = SNELLLinear

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.q * (d_in + d_out) for d_out, d_in in shapes)
