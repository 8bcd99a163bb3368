"""Comp-LoRA: a LoRA update confined to the complement of W0's principal left subspace,
dW = s (I - U_k U_k^T) B A, so the top-k output directions of W0 are never written to."""

from __future__ import annotations

import math

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared


class CompLoRAParams(MethodParams):
    r: PositiveInt = 8
    k: PositiveInt = 16
    alpha: PositiveFloat = 16
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    targets: str | list[str] = "qv"


class CompLoRALinear(AdapterLinear):
    """y = W0 x + s (I - U_k U_k^T) B A dropout(x); U_k frozen (a buffer, not trained)."""

    def __init__(self, base: nn.Linear, p: CompLoRAParams):
        super().__init__(base)
        if p.k >= min(base.out_features, base.in_features):
            raise ValueError(f"k={p.k} leaves no complement in a {tuple(base.weight.shape)} weight")
        self.scaling = p.alpha / p.r
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_A = nn.Linear(base.in_features, p.r, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(p.r, base.out_features, bias=False, dtype=dtype, device=device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        u, _, _ = torch.linalg.svd(base.weight.detach().float(), full_matrices=False)
        # Not persistent: recomputed from W0, so the saved adapter holds only A and B.
        self.register_buffer("u_k", u[:, : p.k].to(dtype).contiguous(), persistent=False)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Remove the components of h (..., d_out) along W0's top-k left singular vectors."""
        return h - (h @ self.u_k) @ self.u_k.T

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.lora_B(self.lora_A(self.dropout(x)))) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        ba = self.lora_B.weight @ self.lora_A.weight
        return (ba - self.u_k @ (self.u_k.T @ ba)) * self.scaling


class CompLoRA(Method):
    Params = CompLoRAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrap_targets(model, patterns, lambda name, lin: CompLoRALinear(lin, self.params))
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
