"""WaRA, Wavelet Low Rank Adaptation (arXiv 2506.24092), as read from its v1 figure.

No code and no full text are reachable; v1's figure caption is the one source with
shapes: the layer input X (d1 x k: features x tokens) goes through a single-level 2-D
DWT into four subbands C_LL, C_LH, C_HL, C_HH (each d1/2 x k/2), one low-rank pair
A_w (r x d1/2), B_w (d2/2 x r) acts on every subband, and the inverse transform gives
the additive update X^ = IDWT(B_w A_w C) (d2 x k). Our reading: the orthonormal Haar
wavelet (db1; none is named), one pair shared by the four subbands (v2's abstract:
"a shared low-rank adapter"), zero-padding of an odd length, LoRA's init and alpha / r.

With one shared pair and an orthonormal wavelet the token half of the 2-D transform
cancels: IDWT_tokens(DWT_tokens(Z)) = Z, so the update is the per-token linear map

    dW = H_out^T blockdiag(B_w A_w, B_w A_w) H_in

(H the 1-D Haar analysis matrix over the feature axis): no mixing of tokens, no
dependence on sequence length or padding, and mergeable. v1's abstract ("the weight
update matrix decomposed in the wavelet domain, low-rank factorisation there,
reconstructed by an inverse transform") describes the same dW. The layer computes
that form; tests/test_methods_wara.py checks it equals the figure's literal 2-D
computation over tokens and features.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod
from suite.methods.api import MethodParams
from suite.methods.lora_pair import lora_factors


class WaRAParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 8
    alpha: PositiveFloat = 16
    wavelet: Literal["haar"] = "haar"
    targets: str | list[str] = "qv"


def half(n: int) -> int:
    """Subband length of a length-n axis (an odd length is zero-padded by one)."""
    return (n + 1) // 2


def haar_analysis(x: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of the orthonormal Haar DWT along `dim`: (low, high), each half(n) long,
    low_j = (x_2j + x_2j+1) / sqrt 2, high_j = (x_2j - x_2j+1) / sqrt 2."""
    x = x.movedim(dim, -1)
    if x.shape[-1] % 2:
        x = torch.cat([x, x.new_zeros(*x.shape[:-1], 1)], dim=-1)
    even, odd = x[..., 0::2], x[..., 1::2]
    low, high = (even + odd) / math.sqrt(2), (even - odd) / math.sqrt(2)
    return low.movedim(-1, dim), high.movedim(-1, dim)


def haar_synthesis(
    low: torch.Tensor, high: torch.Tensor, length: int, dim: int = -1
) -> torch.Tensor:
    """The inverse of `haar_analysis`: interleave (low +- high) / sqrt 2, crop to `length`."""
    low, high = low.movedim(dim, -1), high.movedim(dim, -1)
    even, odd = (low + high) / math.sqrt(2), (low - high) / math.sqrt(2)
    x = torch.stack([even, odd], dim=-1).flatten(-2)[..., :length]
    return x.movedim(-1, dim)


class WaRALinear(AdapterLinear):
    """y = W0 x + s IDWT(B_w A_w DWT(x)), the Haar transforms over the feature axis."""

    def __init__(self, base: nn.Linear, p: WaRAParams):
        super().__init__(base)
        self.scaling = p.alpha / p.r
        self.lora_A, self.lora_B = lora_factors(
            half(base.in_features), half(base.out_features), p.r, base.weight
        )

    def update(self, x: torch.Tensor) -> torch.Tensor:
        low, high = haar_analysis(x)
        out = self.lora_B(self.lora_A(torch.stack([low, high])))  # the shared pair
        return haar_synthesis(out[0], out[1], self.out_features) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        eye = torch.eye(
            self.in_features, dtype=self.lora_A.weight.dtype, device=self.lora_A.weight.device
        )
        return self.update(eye).T  # the linear map applied to every basis vector


class WaRA(LinearAdapterMethod):
    Params = WaRAParams
    layer = WaRALinear

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (half(d_in) + half(d_out)) for d_out, d_in in shapes)
