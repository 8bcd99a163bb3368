"""LoRA-XS: a trainable r x r matrix between W0's frozen truncated-SVD factors.

Follows MohammadrezaBanaei/LoRA-XS utils/initialization_utils.py (find_and_initialize
with reconstr_mode 'separated', r_squared True) and utils/latent_utils.py
(forward_latent, get_delta_weight): B = U_r, A = Sigma_r V_r^T, R ~ N(0, 1e-5^2),
y = W0 x + s B R A x with s = alpha / r; W0 itself is left unchanged.
"""

from __future__ import annotations

import torch
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from suite.methods.adapters import LinearAdapterMethod, TargetedParams
from suite.methods.lowrank_common import FrozenFactorLinear, top_svd


class LoRAXSParams(TargetedParams):
    rank_fields = ("r",)
    r: PositiveInt = 8
    alpha: PositiveFloat = 16
    init_std: NonNegativeFloat = 1e-5


def lora_xs_layer(base, p: LoRAXSParams, generator: torch.Generator) -> FrozenFactorLinear:
    """Wrap one linear: B, A from W0's top-r SVD, R Gaussian with std `init_std`."""
    u, s, vh = top_svd(base.weight, p.r)
    r_mat = torch.randn(p.r, p.r, generator=generator) * p.init_std
    layer = FrozenFactorLinear(base, u, r_mat, s[:, None] * vh)
    layer.scaling = p.alpha / p.r
    return layer


class LoRAXS(LinearAdapterMethod):
    Params = LoRAXSParams

    layer = staticmethod(lora_xs_layer)
    seeded = True

    def expected_trainable_params(self, shapes) -> int:
        return len(shapes) * self.params.r**2
