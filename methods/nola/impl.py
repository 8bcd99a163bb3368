"""NOLA: LoRA whose factors are linear combinations of frozen random bases.

Follows UCDvision/NOLA gpt/src/model_nola.py (GenerateParams, NOLALinear, LoRA with
use_nola=True): A = A0 + sum_i alpha_i A_i, B = 0 + sum_j beta_j B_j, dW = (alpha/r) B A.
A0 is a frozen Kaiming-uniform matrix (the LoRA A init), the bases are uniform in [-1, 1]
scaled by 1/sqrt(#bases), and only the coefficient vectors train (both start at 0).
"""

from __future__ import annotations

import itertools
import math

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.lowrank_common import (
    kaiming_uniform_seeded,
    layer_seed,
    load_and_rebuild,
    seeded_uniform,
    state_with_buffers,
)


class NOLAParams(MethodParams):
    r: PositiveInt = 8
    alpha: PositiveFloat = 8
    num_basis_A: PositiveInt = 1024
    num_basis_B: PositiveInt = 1024
    targets: str | list[str] = "qv"


class NOLALinear(AdapterLinear):
    """y = W0 x + s B A x with A, B mixtures of seeded random bases.

    The bases (and A0) are non-persistent buffers regenerated from `nola_seed`, the
    only non-trainable tensor a saved adapter needs. The official code regenerates them
    inside forward and backward to save GPU memory; holding them is numerically the same.
    """

    def __init__(self, base: nn.Linear, p: NOLAParams, seed: int):
        super().__init__(base)
        self.r, self.scaling = p.r, p.alpha / p.r
        self.register_buffer("nola_seed", torch.tensor(seed, dtype=torch.int64))
        dtype, device = base.weight.dtype, base.weight.device
        self.coef_A = nn.Parameter(torch.zeros(p.num_basis_A, dtype=dtype, device=device))
        self.coef_B = nn.Parameter(torch.zeros(p.num_basis_B, dtype=dtype, device=device))
        self.rebuild()

    @torch.no_grad()
    def rebuild(self) -> None:
        """(Re)generate A0 and both basis stacks from the stored seed."""
        gen = torch.Generator().manual_seed(int(self.nola_seed))
        k_a, k_b = self.coef_A.numel(), self.coef_B.numel()
        d_in, d_out = self.in_features, self.out_features
        a0 = kaiming_uniform_seeded(gen, (self.r, d_in))
        bases_a = seeded_uniform(gen, (k_a, self.r, d_in)) / math.sqrt(k_a)
        bases_b = seeded_uniform(gen, (k_b, d_out, self.r)) / math.sqrt(k_b)
        like = {"dtype": self.coef_A.dtype, "device": self.coef_A.device}
        self.register_buffer("lora_A0", a0.to(**like), persistent=False)
        self.register_buffer("bases_A", bases_a.to(**like), persistent=False)
        self.register_buffer("bases_B", bases_b.to(**like), persistent=False)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) = (A0 + sum alpha_i A_i, sum beta_j B_j)."""
        a = self.lora_A0 + torch.einsum("k,kri->ri", self.coef_A, self.bases_A)
        b = torch.einsum("k,kor->or", self.coef_B, self.bases_B)
        return a, b

    def update(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.factors()
        return nn.functional.linear(nn.functional.linear(x, a), b) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return (b @ a) * self.scaling


class NOLA(Method):
    Params = NOLAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        counter = itertools.count()
        wrap_targets(
            model,
            patterns,
            lambda name, lin: NOLALinear(lin, self.params, layer_seed(ctx.seed, next(counter))),
        )
        prepared = adapter_prepared(model)
        prepared.adapter_state = lambda: state_with_buffers(model, ("nola_seed",))
        prepared.load_adapter_state = lambda state: load_and_rebuild(model, state, NOLALinear)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # Independent of the layer shape: k_A + k_B coefficients per adapted matrix.
        return len(shapes) * (self.params.num_basis_A + self.params.num_basis_B)
