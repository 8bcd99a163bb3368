"""Block-LoRA: LoRA's down-projection split into n column blocks that all share one
matrix A_s, so dW = s B [A_s, ..., A_s] and A x = A_s (x_1 + ... + x_n)."""

from __future__ import annotations

import math

import torch
from pydantic import PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, LowRankUpdateParams


class BlockLoRAParams(LowRankUpdateParams):
    blocks: PositiveInt = 4

    def shape_issues(self, shapes: list[tuple[int, int]]) -> dict[str, str]:
        issues = super().shape_issues(shapes)
        widths = sorted({d_in for _, d_in in shapes if d_in % self.blocks})
        if widths:
            issues["blocks"] = f"blocks = {self.blocks} does not divide d_in = {widths[0]}"
        return issues


class BlockLoRALinear(AdapterLinear):
    """y = W0 x + s B A_s sum_i x_i, with x = [x_1; ...; x_n] split into n equal blocks.

    The shared down-projection turns n block products into one sum of input blocks (the
    paper's "matrix multiplication into matrix addition").
    """

    def __init__(self, base: nn.Linear, p: BlockLoRAParams):
        super().__init__(base)
        if base.in_features % p.blocks:
            raise ValueError(f"d_in={base.in_features} is not divisible by blocks={p.blocks}")
        self.blocks, self.scaling = p.blocks, p.alpha / p.r
        dtype, device = base.weight.dtype, base.weight.device
        width = base.in_features // p.blocks
        self.lora_A = nn.Linear(width, p.r, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(p.r, base.out_features, bias=False, dtype=dtype, device=device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()

    def update(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        summed = x.reshape(*x.shape[:-1], self.blocks, -1).sum(dim=-2)
        return self.lora_B(self.lora_A(summed)) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        down = self.lora_A.weight.repeat(1, self.blocks)  # [A_s, ..., A_s]
        return (self.lora_B.weight @ down) * self.scaling


class BlockLoRA(LinearAdapterMethod):
    Params = BlockLoRAParams

    layer = BlockLoRALinear

    def expected_trainable_params(self, shapes) -> int:
        p = self.params
        return sum(p.r * (d_in // p.blocks + d_out) for d_out, d_in in shapes)
