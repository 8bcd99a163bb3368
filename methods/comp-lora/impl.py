"""Comp-LoRA (Wang et al., arXiv 2501.15040), as reconstructed here: a LoRA confined to
the complement of W0's principal subspaces on both sides,

    dW = s (I - U_k U_k^T) B A (I - V_k V_k^T),    W0 = U S V^T,

so the input is projected into the complement of W0's top-k right (input) singular
subspace before A, and B's output into the complement of its top-k left (output)
singular subspace: W0's k most informative directions are neither read nor written.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, LowRankUpdateParams
from suite.methods.lora_pair import lora_factors


class CompLoRAParams(LowRankUpdateParams):
    k: PositiveInt = 16

    def shape_issues(self, shapes: list[tuple[int, int]]) -> dict[str, str]:
        issues = super().shape_issues(shapes)
        d_out, d_in = min(shapes, key=min)
        if self.k >= min(d_out, d_in):
            issues["k"] = f"k = {self.k} leaves no complement in a targeted {d_out} x {d_in} weight"
        return issues


class CompLoRALinear(AdapterLinear):
    """y = W0 x + s P_out B A P_in dropout(x); U_k, V_k frozen buffers, not trained."""

    def __init__(self, base: nn.Linear, p: CompLoRAParams):
        super().__init__(base)
        if p.k >= min(base.out_features, base.in_features):
            raise ValueError(f"k={p.k} leaves no complement in a {tuple(base.weight.shape)} weight")
        self.scaling = p.alpha / p.r
        self.lora_A, self.lora_B = lora_factors(
            base.in_features, base.out_features, p.r, base.weight
        )
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        u, _, vh = torch.linalg.svd(base.weight.detach().float(), full_matrices=False)
        # Not persistent: recomputed from W0, so the saved adapter holds only A and B.
        self.register_buffer(
            "u_k", u[:, : p.k].to(base.weight.dtype).contiguous(), persistent=False
        )
        self.register_buffer(
            "v_k", vh[: p.k].T.to(base.weight.dtype).contiguous(), persistent=False
        )

    @staticmethod
    def _complement(h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """h (..., d) minus its components along the orthonormal columns of `basis`."""
        return h - (h @ basis) @ basis.T

    def update(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lora_A(self._complement(self.dropout(x), self.v_k))
        return self._complement(self.lora_B(h), self.u_k) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        ba = self.lora_B.weight @ self.lora_A.weight
        ba = ba - self.u_k @ (self.u_k.T @ ba)  # output side
        ba = ba - (ba @ self.v_k) @ self.v_k.T  # input side
        return ba * self.scaling


class CompLoRA(LinearAdapterMethod):
    Params = CompLoRAParams

    layer = CompLoRALinear

    def expected_trainable_params(self, shapes) -> int:
        # LoRA's count: the projections are fixed buffers computed from W0.
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
