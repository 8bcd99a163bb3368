"""LOST: low-rank plus channel-wise sparse pretraining (reconstructed from the abstract).

The abstract: "applies singular value decomposition to weight matrices, preserving the
dominant low-rank components, while allocating the remaining singular values to
construct channel-wise sparse components". This project's reading, per targeted linear
of a randomly initialised model (W0 its own random init, W0 = U S V^T):

- low-rank part B A from the top r triplets: B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T;
- the residual R = W0 - U_r S_r V_r^T (the remaining singular values) restricted to the
  `channel_ratio` share of input channels (columns) where R has the largest l2 norm:
  a dense d_out x c block on c channels, the rest of R dropped;
- both parts train: y = x A^T B^T + x[:, channels] C^T (+ b).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from suite.methods.api import MethodParams
from suite.methods.pretrain import ReplacedLinear, ReplacingMethod


class LOSTParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 128
    channel_ratio: float = Field(default=0.03, gt=0.0, le=1.0)
    targets: str | list[str] = "all-linear"
    train_rest: bool = True


def channel_count(ratio: float, d_in: int) -> int:
    return max(1, round(ratio * d_in))


class LOSTLinear(ReplacedLinear):
    def __init__(self, linear: nn.Linear, p: LOSTParams):
        super().__init__(linear)
        dtype = linear.weight.dtype
        w0 = linear.weight.detach().float().cpu()
        u, s, vh = torch.linalg.svd(w0, full_matrices=False)
        root = s[: p.r].sqrt()
        self.r = p.r
        self.lora_B = nn.Parameter((u[:, : p.r] * root).to(dtype))
        self.lora_A = nn.Parameter((root[:, None] * vh[: p.r]).to(dtype))
        residual = (u[:, p.r :] * s[p.r :]) @ vh[p.r :]
        c = channel_count(p.channel_ratio, self.in_features)
        channels = residual.norm(dim=0).topk(c).indices.sort().values
        self.register_buffer("channels", channels)
        self.sparse_weight = nn.Parameter(residual[:, channels].contiguous().to(dtype))
        self.to(linear.weight.device)

    def weight_matrix(self) -> torch.Tensor:
        w = self.lora_B @ self.lora_A
        return w.index_add(1, self.channels, self.sparse_weight.to(w.dtype))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        low = F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype))
        return low + F.linear(x.index_select(-1, self.channels), self.sparse_weight.to(x.dtype))

    @property
    def flop_weights(self) -> tuple[int, int]:
        n = self.r * (self.in_features + self.out_features) + self.sparse_weight.numel()
        return n, n


class LOST(ReplacingMethod):
    Params = LOSTParams
    layer = LOSTLinear

    def expected_trainable_params(self, shapes) -> int:
        p = self.params
        return sum(
            p.r * (d_in + d_out) + d_out * channel_count(p.channel_ratio, d_in)
            for d_out, d_in in shapes
        )
