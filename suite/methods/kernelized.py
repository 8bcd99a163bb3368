"""Kernelised sparse updates from two factor matrices (SNELL, SNELLA), after
ssfgunner/SNELL model/vision_transformer_timm.py (classes SNELL, KLoRA, SNELLA).

Each layer holds In_Qs (H x d_in x q/H) and Out_Qs (H x d_out x q/H), Kaiming-uniform;
the kernel is K = sum_h c_h cdist_p(In_Qs[h], Out_Qs[h]) (d_in x d_out) with fixed
c_h = coeff (-1)^h, a nonlinear kernel of the factors rather than their product.
`sparsify` keeps the entries whose |K| exceeds the `sparsity` quantile and weights them
by their detached magnitude, dW^T = K * stopgrad(|K| 1[|K| > thr]): the entries compete
for the kept slots at every step, and nothing but the factors is stored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import PositiveInt, ValidationInfo, field_validator
from torch import nn

from suite.methods.adapters import AdapterLinear, TargetedParams


class KernelizedParams(TargetedParams):
    """SNELL's and SNELLA's factor width q, split evenly across the kernels' factors."""

    q: PositiveInt = 8
    kernels: PositiveInt = 2

    @field_validator("kernels")
    @classmethod
    def _q_splits_into_kernels(cls, kernels: int, info: ValidationInfo) -> int:
        q = info.data.get("q")
        if q is not None and q % kernels:
            raise ValueError(f"q={q} must be a multiple of kernels={kernels}")
        return kernels


# torch.quantile refuses inputs above 2**24 elements; larger matrices use kthvalue.
_QUANTILE_LIMIT = 2**24


def magnitude_threshold(values: torch.Tensor, quantile: float) -> torch.Tensor:
    flat = values.reshape(-1)
    if flat.numel() <= _QUANTILE_LIMIT:
        return torch.quantile(flat, quantile)
    return torch.kthvalue(flat, max(1, int(quantile * flat.numel()))).values


def sparsify(kernel: torch.Tensor, sparsity: float) -> torch.Tensor:
    """The reference's `sparsify`: K * threshold(|K|, quantile(|K|, sparsity), 0), |K|
    detached (so survivors are weighted by their magnitude and only K carries gradient)."""
    magnitude = kernel.detach().abs()
    return kernel * F.threshold(magnitude, float(magnitude_threshold(magnitude, sparsity)), 0)


class SNELLLinear(AdapterLinear):
    """A frozen linear plus SNELL's kernelised, competition-sparsified update."""

    def __init__(
        self, base: nn.Linear, q: int, kernels: int, sparsity: float, norm_p: float, coeff: float
    ):
        super().__init__(base)
        if q % kernels:
            raise ValueError(f"q={q} must be a multiple of kernels={kernels}")
        self.sparsity, self.norm_p = sparsity, norm_p
        dtype, device = base.weight.dtype, base.weight.device
        width = q // kernels
        self.in_qs = nn.Parameter(torch.empty(kernels, base.in_features, width, dtype=dtype))
        self.out_qs = nn.Parameter(torch.empty(kernels, base.out_features, width, dtype=dtype))
        signs = torch.tensor([(-1.0) ** h for h in range(kernels)], dtype=dtype)
        self.register_buffer("coeff", (coeff * signs).view(-1, 1, 1), persistent=False)
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
            k = sparsify(k, self.sparsity)
        return k.T

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight().to(x.dtype))
