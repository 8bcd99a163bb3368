"""A plain LoRA pair on one frozen linear, at any rank: the building block of methods that
change something around LoRA (its gradient, its rank per layer, a gate per module) and
keep its factors, init and merge (ALLoRA, CoLoRA, DiffoRA; WaRA's half-size pair).

Init as Hugging Face PEFT's default (`reset_lora_parameters` with init_lora_weights=True):
A (r x d_in) Kaiming-uniform with a = sqrt 5, B (d_out x r) zeros, so the model is
unchanged at init. Tensors are created like the base weight (dtype, device); the engine
casts them to fp32 on a bf16 base.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from suite.methods.adapters import AdapterLinear


def lora_factors(d_in: int, d_out: int, r: int, like: torch.Tensor) -> tuple[nn.Linear, nn.Linear]:
    """(A: d_in -> r, B: r -> d_out) as bias-free linears, PEFT's default init."""
    kwargs = {"bias": False, "dtype": like.dtype, "device": like.device}
    lora_a, lora_b = nn.Linear(d_in, r, **kwargs), nn.Linear(r, d_out, **kwargs)
    nn.init.kaiming_uniform_(lora_a.weight, a=math.sqrt(5))
    nn.init.zeros_(lora_b.weight)
    return lora_a, lora_b


class LoRAPairLinear(AdapterLinear):
    """y = W0 x + s B A x, rank `r`, scale `scaling` (no dropout)."""

    def __init__(self, base: nn.Linear, r: int, scaling: float):
        super().__init__(base)
        self.r, self.scaling = r, scaling
        self.lora_A, self.lora_B = lora_factors(base.in_features, base.out_features, r, base.weight)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(x)) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling
