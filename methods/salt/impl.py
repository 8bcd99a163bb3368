"""SALT: scale/shift the top singular values and LoRA-adapt the remaining spectrum.

Follows BioMedIA-MBZUAI/SALT prompt_adapted_SAM2/modeling/Adapters/SALT.py
(SALTLinear): full SVD W0 = U diag(S) V^T; with k = min(d_in, d_out) and
r = max(1, int(k * ratio)), S' = diag(S) with its top r diagonal entries replaced by
a * S_r + b (a = 1, b = 0) and its trailing (k - r) block plus X Y (X Kaiming-uniform,
Y zeros); W' = U ReLU(S') V^T, the ReLU taken elementwise over the k x k matrix.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, TargetedParams


class SALTParams(TargetedParams):
    rank_fields = ("r_lora",)
    ratio: float = Field(default=0.1, gt=0.0, le=1.0)
    r_lora: PositiveInt = 8


def salt_ranks(shape: tuple[int, int], ratio: float) -> tuple[int, int]:
    """(r, k - r): scaled/shifted singular values and the LoRA-adapted remainder."""
    k = min(shape)
    r = max(1, int(k * ratio))
    return r, max(0, k - r)


class SALTLinear(AdapterLinear):
    """W' = U ReLU(S') V^T, computed as W0 + U (ReLU(S') - diag(S)) V^T.

    Both forms are the same matrix; the second leaves the model exactly unchanged at
    init (ReLU(S') = diag(S) there) instead of up to the SVD's round-off.
    """

    def __init__(
        self,
        base: nn.Linear,
        p: SALTParams,
        generator: torch.Generator,
        svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ):
        """`svd`: a given thin SVD (U, S, V^T) of the base weight instead of computing it.
        The layer is a different function for another choice of singular-vector signs (or
        of a basis within tied singular values), which LAPACK builds may choose
        differently; golden tests pass the reference's own basis here."""
        super().__init__(base)
        if svd is None:
            svd = torch.linalg.svd(base.weight.detach().float(), full_matrices=False)
        u, s, vh = (t.detach().float() for t in svd)
        self.rank, rest = salt_ranks(tuple(base.weight.shape), p.ratio)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.register_buffer("svd_U", u.to(**like), persistent=False)
        self.register_buffer("svd_S", s.to(**like), persistent=False)
        self.register_buffer("svd_Vh", vh.to(**like), persistent=False)
        self.trainable_scale_A = nn.Parameter(torch.ones(self.rank, **like))
        self.trainable_shift_B = nn.Parameter(torch.zeros(self.rank, **like))
        x = torch.empty(rest, p.r_lora)
        # As in SALTLinear (with nonlinearity 'relu' the a=sqrt(20) is ignored by torch).
        nn.init.kaiming_uniform_(
            x, a=math.sqrt(20), mode="fan_in", nonlinearity="relu", generator=generator
        )
        self.trainable_X = nn.Parameter(x.to(**like))
        self.trainable_Y = nn.Parameter(torch.zeros(p.r_lora, rest, **like))

    def modified_spectrum(self) -> torch.Tensor:
        """S' (k x k): scaled/shifted top block, LoRA-adapted trailing block."""
        r = self.rank
        top = self.trainable_scale_A * self.svd_S[:r] + self.trainable_shift_B
        rest = torch.diag(self.svd_S[r:]) + self.trainable_X @ self.trainable_Y
        return torch.block_diag(torch.diag(top), rest)

    def delta_weight(self) -> torch.Tensor:
        core = torch.relu(self.modified_spectrum()) - torch.diag(self.svd_S)
        return self.svd_U @ core @ self.svd_Vh

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.delta_weight())


class SALT(LinearAdapterMethod):
    Params = SALTParams

    layer = SALTLinear
    seeded = True

    def expected_trainable_params(self, shapes) -> int:
        total = 0
        for shape in shapes:
            r, rest = salt_ranks(shape, self.params.ratio)
            total += 2 * r + 2 * rest * self.params.r_lora
        return total
