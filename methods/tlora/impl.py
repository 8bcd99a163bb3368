"""TLoRA: y = (W0 T + Delta) x + b, T a tensor-ring-matrix transform (identity at init),
Delta a tensor-ring residual (zero at init). The structures are in tensor.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, TargetedParams
from suite.plugins import sibling_names

# This method's own maths, in this folder (tensor.py).
balanced_factors, count, identity_trm_cores, residual_cores, tr_matrix, trm_matrix = (
    sibling_names(
        __file__, "tensor.py", "balanced_factors", "count", "identity_trm_cores",
        "residual_cores", "tr_matrix", "trm_matrix",
    )
)  # fmt: skip


class TLoRAParams(TargetedParams):
    # The paper's lightest setting, TLoRA(2, 6) (0.40M parameters on SD 1.5), read as
    # (R, D); D = 4 here because the encoders' widths (384, 1536) have few prime factors.
    rank: PositiveInt = 2
    order: PositiveInt = 4


class TLoRALinear(AdapterLinear):
    """The transform acts on the input side of W0 (W0 T); both parts train."""

    def __init__(self, base: nn.Linear, p: TLoRAParams, gen: torch.Generator):
        super().__init__(base)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        ins = balanced_factors(base.in_features, p.order)
        outs = balanced_factors(base.out_features, p.order)
        self.tlora_transform = nn.ParameterList(
            nn.Parameter(c.clone()) for c in identity_trm_cores(ins, p.rank, **like)
        )
        rows, cols = residual_cores(outs, ins, p.rank, gen)
        self.tlora_rows = nn.ParameterList(nn.Parameter(c.to(**like)) for c in rows)
        self.tlora_cols = nn.ParameterList(nn.Parameter(c.to(**like)) for c in cols)

    def transform(self) -> torch.Tensor:
        return trm_matrix(list(self.tlora_transform))

    def residual(self) -> torch.Tensor:
        return tr_matrix(list(self.tlora_rows), list(self.tlora_cols))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        # W0 (T x - x) + Delta x: the base's own W0 x + b is added by forward.
        shifted = F.linear(x, self.transform()) - x
        return F.linear(shifted, self.base.weight.to(x.dtype)) + F.linear(x, self.residual())

    def delta_weight(self) -> torch.Tensor:
        eye = torch.eye(
            self.in_features, dtype=self.base.weight.dtype, device=self.base.weight.device
        )
        transform = self.transform().to(eye.dtype)
        return self.base.weight @ (transform - eye) + self.residual().to(eye.dtype)


class TLoRA(LinearAdapterMethod):
    Params = TLoRAParams
    layer = TLoRALinear
    seeded = True

    def expected_trainable_params(self, shapes) -> int:
        return sum(
            count(d_out, d_in, self.params.rank, self.params.order) for d_out, d_in in shapes
        )
