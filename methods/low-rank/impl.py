"""Plain low-rank pretraining: every target weight is W = B A, trained from scratch."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from suite.methods.api import MethodParams
from suite.methods.pretrain import ReplacedLinear, ReplacingMethod, spectral_factors


class LowRankParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 128
    targets: str | list[str] = "all-linear"
    # spectral: the best rank-r approximation of the layer's own random init (B = U_r
    # sqrt(S_r), A = sqrt(S_r) V_r^T); lora: A Kaiming-uniform (a = sqrt 5), B = 0.
    init: Literal["spectral", "lora"] = "spectral"
    train_rest: bool = True


class LowRankLinear(ReplacedLinear):
    """y = x A^T B^T (+ b), A r x d_in, B d_out x r; the product is never materialised."""

    def __init__(self, linear: nn.Linear, p: LowRankParams, gen: torch.Generator):
        super().__init__(linear)
        kw = self.factory_kwargs(linear)
        self.r = p.r
        self.lora_A = nn.Parameter(torch.empty(p.r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, p.r, **kw))
        with torch.no_grad():
            if p.init == "spectral":
                u, s, v = spectral_factors(linear.weight, p.r)
                self.lora_B.copy_(u * s.sqrt())
                self.lora_A.copy_((v * s.sqrt()).T)
            else:
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=gen)
                self.lora_B.zero_()
        self.to(linear.weight.device)

    def weight_matrix(self) -> torch.Tensor:
        return self.lora_B @ self.lora_A

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype))

    @property
    def flop_weights(self) -> tuple[int, int]:
        n = self.r * (self.in_features + self.out_features)
        return n, n


class LowRank(ReplacingMethod):
    Params = LowRankParams
    layer = LowRankLinear
    seeded = True

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
