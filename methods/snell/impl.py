"""SNELL: a kernelised dense update from two factor matrices, sparsified by competition.

Follows ssfgunner/SNELL `model/vision_transformer_timm.py`: `SNELL` (and `KLoRA` when the
sparsity is 0); the layer is suite/methods/kernelized.py's SNELLLinear (shared with
SNELLA), which says how the kernel and the competition work.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat
from torch import nn

from suite.methods.adapters import LinearAdapterMethod
from suite.methods.kernelized import KernelizedParams, SNELLLinear


class SNELLParams(KernelizedParams):
    sparsity: float = Field(default=0.5, ge=0.0, lt=1.0)
    norm_p: PositiveFloat = 2.0
    coeff: PositiveFloat = 0.1


def snell_layer(base: nn.Linear, p: SNELLParams) -> SNELLLinear:
    return SNELLLinear(base, p.q, p.kernels, p.sparsity, p.norm_p, p.coeff)


class SNELL(LinearAdapterMethod):
    Params = SNELLParams

    layer = snell_layer

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.q * (d_in + d_out) for d_out, d_in in shapes)
