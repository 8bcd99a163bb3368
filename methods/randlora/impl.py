"""RandLoRA, faithful to Hugging Face PEFT 0.21's RandLoraModel / randlora.Linear."""

from __future__ import annotations

import math

import torch
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    FactoredLinear,
    LowRankUpdateParams,
    adapter_prepared,
    wrap_targets,
)
from suite.methods.api import Method, Prepared
from suite.methods.random_bases import SharedBases, kaiming_uniform_a5, largest_shape
from suite.methods.targets import find_targets


class RandLoRAParams(LowRankUpdateParams):
    r: PositiveInt = 32
    alpha: PositiveFloat = 640  # PEFT's randlora_alpha default: 20 x the default r
    projection_prng_key: NonNegativeInt = 0


def num_bases(d_out: int, d_in: int, r: int) -> int:
    """n = ceil(min(d_in, d_out) / r): enough rank-r bases for a full-rank update."""
    return math.ceil(min(d_out, d_in) / r)


def randlora_bases(linears: list[nn.Linear], p: RandLoRAParams) -> SharedBases:
    """A (r, 1, min dim): one base shared by the n terms; B (max dim, n, r); std-normalised.

    Drawn in bfloat16 as PEFT does where bf16 is available (it then casts to the layers'
    dtype), so the bases are bit-identical to PEFT's for the same key.
    """
    out_dim, in_dim = largest_shape(linears)
    big, small = max(out_dim, in_dim), min(out_dim, in_dim)
    gen = torch.Generator(device="cpu").manual_seed(p.projection_prng_key)
    a = kaiming_uniform_a5((p.r, 1, small), gen, torch.bfloat16)
    n = num_bases(out_dim, in_dim, p.r)
    b = torch.cat([kaiming_uniform_a5((big, 1, p.r), gen, torch.bfloat16) for _ in range(n)], 1)
    a, b = a / a.std(), b / b.std()
    weight = linears[0].weight
    return SharedBases(A=a.to(weight.device, weight.dtype), B=b.to(weight.device, weight.dtype))


class ScaledBase(torch.autograd.Function):
    """lambda[:, :, None] * A * gamma[None], saving only its inputs (PEFT's UniqueBaseGrad)."""

    @staticmethod
    def forward(ctx, base, lam, gamma):
        ctx.save_for_backward(base, lam, gamma)
        return lam[:, :, None] * base * gamma[None]

    @staticmethod
    def backward(ctx, grad):
        base, lam, gamma = (t.to(grad.dtype) for t in ctx.saved_tensors)
        grad_lam = torch.einsum("kbj,kvj,bj->kb", grad, base, gamma)
        grad_gamma = torch.einsum("kbj,kvj,kb->bj", grad, base, lam)
        return None, grad_lam, grad_gamma


class RandLoRALinear(FactoredLinear):
    """dW = s sum_j B_j diag(lambda_j) A diag(gamma_j), j = 1..n, applied as two matmuls."""

    def __init__(self, base: nn.Linear, bases: SharedBases, p: RandLoRAParams):
        super().__init__(base)
        self.bases = bases
        self.scaling = p.alpha / p.r
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        self.n = num_bases(base.out_features, base.in_features, p.r)
        small = min(base.out_features, base.in_features)
        dtype, device = base.weight.dtype, base.weight.device
        # PEFT reset_randlora_parameters: lambda = 0 (identity), gamma = 1 / max(gamma.shape).
        self.randlora_lambda = nn.Parameter(torch.zeros(p.r, self.n, dtype=dtype, device=device))
        gamma = torch.full((self.n, small), 1.0 / max(self.n, small), dtype=dtype, device=device)
        self.randlora_gamma = nn.Parameter(gamma)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(first, second) with update(x) = s * second(first(x)), as PEFT's get_scaled_bases."""
        d_out, d_in = self.out_features, self.in_features
        small, big = min(d_out, d_in), max(d_out, d_in)
        a = self.bases.A[:, : self.n, :small]
        b = self.bases.B[:big, : self.n, :].flatten(start_dim=1)
        scaled = ScaledBase.apply(a, self.randlora_lambda, self.randlora_gamma).flatten(end_dim=1)
        if small == d_in:
            return scaled, b
        return b.T, scaled.T


class RandLoRA(Method):
    Params = RandLoRAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        linears = [m for _, m in find_targets(model.backbone, patterns)]
        bases = randlora_bases(linears, self.params)
        wrap_targets(model, patterns, lambda name, lin: RandLoRALinear(lin, bases, self.params))
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        r = self.params.r
        return sum(num_bases(o, i, r) * (r + min(o, i)) for o, i in shapes)
