"""VeRA, faithful to Hugging Face PEFT 0.21's VeraModel / vera.Linear."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, TargetedParams, adapter_prepared, wrap_targets
from suite.methods.api import Method, Prepared
from suite.methods.random_bases import SharedBases, kaiming_uniform_fan_in, largest_shape
from suite.methods.targets import find_targets


class VeRAParams(TargetedParams):
    r: PositiveInt = 256
    d_initial: float = 0.1
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    projection_prng_key: NonNegativeInt = 0


def vera_bases(linears: list[nn.Linear], p: VeRAParams) -> SharedBases:
    """A (r x max d_in) then B (max d_out x r) from one generator, as PEFT draws them."""
    out_dim, in_dim = largest_shape(linears)
    gen = torch.Generator(device="cpu").manual_seed(p.projection_prng_key)
    a = kaiming_uniform_fan_in((p.r, in_dim), gen)
    b = kaiming_uniform_fan_in((out_dim, p.r), gen)
    weight = linears[0].weight
    return SharedBases(A=a.to(weight.device, weight.dtype), B=b.to(weight.device, weight.dtype))


class VeRALinear(AdapterLinear):
    """y = W0 x + lambda_b * (B_sliced (lambda_d * (A_sliced dropout(x))))."""

    def __init__(self, base: nn.Linear, bases: SharedBases, p: VeRAParams):
        super().__init__(base)
        self.bases = bases
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        dtype, device = base.weight.dtype, base.weight.device
        # PEFT reset_vera_parameters: lambda_b = 0 (identity at init), lambda_d = d_initial.
        self.vera_lambda_b = nn.Parameter(
            torch.zeros(base.out_features, dtype=dtype, device=device)
        )
        self.vera_lambda_d = nn.Parameter(
            torch.full((p.r,), p.d_initial, dtype=dtype, device=device)
        )

    def _sliced(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bases.A[:, : self.in_features], self.bases.B[: self.out_features, :]

    def update(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self._sliced()
        return self.vera_lambda_b * F.linear(self.vera_lambda_d * F.linear(self.dropout(x), a), b)

    def delta_weight(self) -> torch.Tensor:
        a, b = self._sliced()
        return (self.vera_lambda_b[:, None] * b) @ (self.vera_lambda_d[:, None] * a)


class VeRA(Method):
    Params = VeRAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        bases = vera_bases([m for _, m in find_targets(model.backbone, patterns)], self.params)
        wrap_targets(model, patterns, lambda name, linear: VeRALinear(linear, bases, self.params))
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        return sum(d_out + self.params.r for d_out, _ in shapes)
