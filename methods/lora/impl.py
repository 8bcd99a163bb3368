"""LoRA, faithful to Hugging Face PEFT's LoraLayer (default init, rsLoRA, PiSSA option)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, LowRankUpdateParams


class LoRAParams(LowRankUpdateParams):
    rslora: bool = False
    init: Literal["kaiming", "pissa"] = "kaiming"


class LoRALinear(AdapterLinear):
    """y = W0 x + s * B(A(dropout(x)))."""

    def __init__(self, base: nn.Linear, p: LoRAParams):
        super().__init__(base)
        self.r = p.r
        self.scaling = p.alpha / math.sqrt(p.r) if p.rslora else p.alpha / p.r
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_A = nn.Linear(base.in_features, p.r, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(p.r, base.out_features, bias=False, dtype=dtype, device=device)
        if p.init == "pissa":
            self._pissa_init()
        else:
            # PEFT: kaiming_uniform_(A, a=sqrt(5)), B = 0, so the model is unchanged at init.
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B.weight)

    @torch.no_grad()
    def _pissa_init(self) -> None:
        """PiSSA: A, B from the top-r SVD of W0; W0 keeps the residual (PEFT pissa_init)."""
        weight = self.base.weight.float()
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        sqrt_s = torch.sqrt(s[: self.r]) / math.sqrt(self.scaling)
        self.lora_A.weight.copy_((sqrt_s[:, None] * vh[: self.r]).to(self.lora_A.weight.dtype))
        self.lora_B.weight.copy_((u[:, : self.r] * sqrt_s[None, :]).to(self.lora_B.weight.dtype))
        residual = weight - self.scaling * self.lora_B.weight.float() @ self.lora_A.weight.float()
        self.base.weight.copy_(residual.to(self.base.weight.dtype))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def low_rank_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lora_B.weight * self.scaling, self.lora_A.weight


class LoRA(LinearAdapterMethod):
    Params = LoRAParams

    layer = LoRALinear

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
