"""SNELL: a kernelised dense update from two factor matrices, sparsified by competition.

Follows ssfgunner/SNELL `model/vision_transformer_timm.py`: `SNELL` (and `KLoRA` when the
sparsity is 0); the layer is suite/methods/kernelized.py's SNELLLinear (shared with
SNELLA), which says how the kernel and the competition work.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from suite.methods.adapters import adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.kernelized import SNELLLinear


class SNELLParams(MethodParams):
    q: PositiveInt = 8
    kernels: PositiveInt = 2
    sparsity: float = Field(default=0.5, ge=0.0, lt=1.0)
    norm_p: PositiveFloat = 2.0
    coeff: PositiveFloat = 0.1
    targets: str | list[str] = "qv"


class SNELL(Method):
    Params = SNELLParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        wrap_targets(
            model,
            patterns,
            lambda _, lin: SNELLLinear(lin, p.q, p.kernels, p.sparsity, p.norm_p, p.coeff),
        )
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.q * (d_in + d_out) for d_out, d_in in shapes)
