"""DoRA, faithful to Hugging Face PEFT 0.21's LoRA with `use_dora=True` (DoraLinearLayer)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, LowRankUpdateParams


class DoRAParams(LowRankUpdateParams):
    rslora: bool = False


@torch.no_grad()
def row_norm(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float):
    """||W0 + s B A|| over each output row, without forming a d_out x d_in matrix.

    PEFT forms B A (through an identity matrix) and W0 + s B A; expanding the square,
    ||w_i + s (BA)_i||^2 = ||w_i||^2 + 2 s <b_i, (W0 A^T)_i> + s^2 b_i (A A^T) b_i^T,
    costs the same matmul FLOPs but only d_out x r extra memory. Detached, as in PEFT
    (DoRA section 4.3): the norm is treated as a constant for the gradient.
    """
    base_sq = torch.linalg.vector_norm(weight, dim=1).square()
    cross = (b * (weight @ a.T)).sum(dim=1)
    lora_sq = ((b @ (a @ a.T)) * b).sum(dim=1)
    return (base_sq + 2 * scaling * cross + scaling**2 * lora_sq).clamp_min(0).sqrt()


class DoRALinear(AdapterLinear):
    """y = (m / ||W0 + s B A||_row) (W0 x + s B A x) + bias, with the norm detached."""

    def __init__(self, base: nn.Linear, p: DoRAParams):
        super().__init__(base)
        self.scaling = p.alpha / math.sqrt(p.r) if p.rslora else p.alpha / p.r
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_A = nn.Linear(base.in_features, p.r, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(p.r, base.out_features, bias=False, dtype=dtype, device=device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        # PEFT's DoraLinearLayer.update_layer: m = ||W0 + s B A||_row = ||W0||_row (B = 0).
        with torch.no_grad():
            norm = torch.linalg.norm(base.weight, dim=1).to(dtype)
        self.magnitude = nn.Parameter(norm)

    def weight_norm(self) -> torch.Tensor:
        # In the adapter's dtype (fp32 on a bf16 base), as PEFT casts W0 to the input's.
        weight = self.base.weight.to(self.lora_A.weight.dtype)
        return row_norm(weight, self.lora_A.weight, self.lora_B.weight, self.scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        xa = self.adapter_input(x)
        scale = (self.magnitude / self.weight_norm()).view(1, -1)
        if isinstance(self.dropout, nn.Identity) or not self.training:
            # scale (W0 x + s B A x) + bias: PEFT's W0x + b + (scale - 1) W0x + scale sBAx
            # regrouped, so autograd keeps one activation-sized tensor per layer, not two.
            z = F.linear(x, self.base.weight) + self.lora_B(self.lora_A(xa)) * self.scaling
            out = scale * z
            out = out if self.base.bias is None else out + self.base.bias
            return out.to(x.dtype)
        # With live dropout PEFT applies the DoRA term to the dropped-out input only.
        xd = self.dropout(xa)
        lora_out = self.lora_B(self.lora_A(xd)) * self.scaling
        dora = (scale - 1) * F.linear(xd.to(x.dtype), self.base.weight) + scale * lora_out
        return (self.base(x) + dora).to(x.dtype)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def merged_weight(self) -> torch.Tensor:
        # PEFT merge: (m / ||W0 + dW||) (W0 + dW), the norm taken on the unmerged weight.
        factor = (self.magnitude / self.weight_norm()).view(-1, 1)
        weight = self.base.weight.to(factor.dtype) + self.delta_weight()
        return (factor * weight).to(self.base.weight.dtype)


class DoRA(LinearAdapterMethod):
    Params = DoRAParams

    layer = DoRALinear

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out) + d_out for d_out, d_in in shapes)
