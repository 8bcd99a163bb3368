"""SVFit: train only the top-r singular values of each frozen weight.

Follows the SVFit paper (arXiv 2409.05926, abstract and method summary; no official code
was found): W0 = U_r S_r V_r^T + W_e, U_r, V_r and W_e frozen, the r singular values s
trainable and initialised to S_r. Written as W = W0 + U_r diag(s - S_r) V_r^T, which is
the same matrix and leaves the model exactly unchanged at init.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.lowrank_common import top_svd


class SVFitParams(MethodParams):
    r: PositiveInt = 64
    targets: str | list[str] = "qv"


class SVFitLinear(AdapterLinear):
    """y = W0 x + U_r diag(s - S_r) V_r^T x with only s trainable."""

    def __init__(self, base: nn.Linear, r: int):
        super().__init__(base)
        u, s, vh = top_svd(base.weight, r)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.register_buffer("svd_U", u.to(**like), persistent=False)
        self.register_buffer("svd_Vh", vh.to(**like), persistent=False)
        self.register_buffer("sigma0", s.to(**like), persistent=False)
        self.sigma = nn.Parameter(s.clone().to(**like))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.linear(x, self.svd_Vh) * (self.sigma - self.sigma0)
        return nn.functional.linear(h, self.svd_U)

    def delta_weight(self) -> torch.Tensor:
        return (self.svd_U * (self.sigma - self.sigma0)) @ self.svd_Vh


class SVFit(Method):
    Params = SVFitParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrap_targets(model, patterns, lambda name, lin: SVFitLinear(lin, self.params.r))
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        return sum(min(self.params.r, d_out, d_in) for d_out, d_in in shapes)
