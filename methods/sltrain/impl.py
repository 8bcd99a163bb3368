"""SLTrain: W = (alpha / r) B A + S, S on a fixed random support, trained from scratch.

Follows andyjm3/SLTrain@2335d62 splora/splora_linear.py (SpLoRaLinear) and its C++
extension sparse-lora/sparse_linear.cpp: the draws in the reference's order (bias
U(-1/sqrt d_out, 1/sqrt d_out), A kaiming_uniform_(a = sqrt 5), B = 0, support
sort(randperm(d_out d_in)[:int(delta d_out d_in)]), values U(-1/sqrt d_in, 1/sqrt d_in)),
and its memory-saving autograd function: only the input and the factors are saved, W is
rebuilt in the backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.api import MethodParams
from suite.methods.pretrain import ReplacedLinear, ReplacingMethod


class SLTrainParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 128
    alpha: PositiveFloat = 32.0
    delta: float = Field(default=0.03, gt=0.0, lt=1.0)  # the reference's sp_ratio
    targets: str | list[str] = "all-linear"
    train_rest: bool = True


def _dense(lora_b, lora_a_scaled, values, index, dtype) -> torch.Tensor:
    w = lora_b.to(dtype) @ lora_a_scaled.to(dtype)
    return w.view(-1).scatter_add(0, index, values.to(dtype)).view_as(w)


class SparseLowRankFunction(torch.autograd.Function):
    """y = x W^T + b with W = B (A s) + scatter(values at index); saves x and the
    factors, not W (the reference's lora_sparse_linear)."""

    @staticmethod
    def forward(ctx, x, lora_b, lora_a_scaled, values, index, bias):
        ctx.save_for_backward(x, lora_b, lora_a_scaled, values, index, bias)
        w = _dense(lora_b, lora_a_scaled, values, index, x.dtype)
        return F.linear(x, w, None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        x, lora_b, lora_a_scaled, values, index, bias = ctx.saved_tensors
        w = _dense(lora_b, lora_a_scaled, values, index, grad_out.dtype)
        go = grad_out.reshape(-1, grad_out.shape[-1])
        grad_w = go.t() @ x.reshape(-1, x.shape[-1]).to(go.dtype)
        grad_x = (go @ w).view_as(x) if ctx.needs_input_grad[0] else None
        grad_b = (grad_w @ lora_a_scaled.t().to(grad_w.dtype)).to(lora_b.dtype)
        grad_a = (lora_b.t().to(grad_w.dtype) @ grad_w).to(lora_a_scaled.dtype)
        grad_values = grad_w.view(-1).gather(0, index).to(values.dtype)
        grad_bias = go.sum(0).to(bias.dtype) if ctx.needs_input_grad[5] else None
        return grad_x, grad_b, grad_a, grad_values, None, grad_bias


class SLTrainLinear(ReplacedLinear):
    def __init__(self, linear: nn.Linear, p: SLTrainParams, gen: torch.Generator):
        super().__init__(linear)
        kw = self.factory_kwargs(linear)
        m, n = self.out_features, self.in_features
        if self.bias is not None:
            bias = torch.empty(m, **kw)
            nn.init.uniform_(bias, -1 / math.sqrt(m), 1 / math.sqrt(m), generator=gen)
            self.bias = nn.Parameter(bias)  # the reference bounds it by out_features
        self.r, self.scaling = p.r, p.alpha / p.r
        self.lora_A = nn.Parameter(torch.empty(p.r, n, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=gen)
        self.lora_B = nn.Parameter(torch.zeros(m, p.r, **kw))
        count = int(p.delta * m * n)
        index = torch.randperm(m * n, generator=gen)[:count]
        self.register_buffer("sparse_index", torch.sort(index).values)
        values = torch.empty(count, **kw)
        bound = 1 / math.sqrt(n)
        nn.init.uniform_(values, -bound, bound, generator=gen)
        self.sparse_value = nn.Parameter(values)
        self.to(linear.weight.device)

    def weight_matrix(self) -> torch.Tensor:
        a = self.lora_A * self.scaling
        return _dense(self.lora_B, a, self.sparse_value, self.sparse_index, self.lora_B.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._merged is not None:
            return super().forward(x)
        a = self.lora_A * self.scaling
        return SparseLowRankFunction.apply(
            x, self.lora_B, a, self.sparse_value, self.sparse_index, self.bias
        )


def sltrain_count(r: int, delta: float, d_out: int, d_in: int) -> int:
    return r * (d_in + d_out) + int(delta * d_out * d_in)


class SLTrain(ReplacingMethod):
    Params = SLTrainParams
    layer = SLTrainLinear
    seeded = True

    def expected_trainable_params(self, shapes) -> int:
        p = self.params
        return sum(sltrain_count(p.r, p.delta, d_out, d_in) for d_out, d_in in shapes)
