"""FourierFT, faithful to Hugging Face PEFT 0.21's FourierFTLayer (default init_weights=False)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, LinearAdapterMethod, TargetedParams


class FourierFTParams(TargetedParams):
    n_frequency: PositiveInt = 1000
    scaling: PositiveFloat = 150.0
    random_loc_seed: NonNegativeInt = 777
    # PEFT's default (False) draws the spectrum from N(0, 1); True starts it at zero.
    init_zero: bool = False

    spectrum_fields = ("n_frequency",)


@lru_cache(maxsize=16)
def spectral_locations(d_out: int, d_in: int, n: int, seed: int) -> torch.Tensor:
    """(2, n) row/column indices: PEFT's randperm of d_out*d_in from `seed`, first n kept.

    The same seed for every layer, so layers of one shape share their locations (and,
    cached, one CPU tensor: a 3072 x 3072 permutation takes a tenth of a second).
    """
    if n > d_out * d_in:
        raise ValueError(f"n_frequency {n} exceeds the {d_out}x{d_in} spectrum")
    flat = torch.randperm(
        d_out * d_in, generator=torch.Generator().manual_seed(seed), device="cpu"
    )[:n]
    return torch.stack([flat // d_in, flat % d_in], dim=0)


class FourierFTLinear(AdapterLinear):
    """y = W0 x + (alpha Re(IFFT2(S))) x, S zero except the trained values at n locations."""

    def __init__(self, base: nn.Linear, p: FourierFTParams):
        super().__init__(base)
        self.scaling = p.scaling
        idx = spectral_locations(
            base.out_features, base.in_features, p.n_frequency, p.random_loc_seed
        )
        self.register_buffer("indices", idx.to(base.weight.device), persistent=False)
        spectrum = torch.randn(p.n_frequency, dtype=base.weight.dtype, device=base.weight.device)
        if p.init_zero:
            spectrum = torch.zeros_like(spectrum)
        self.fourierft_spectrum = nn.Parameter(spectrum)

    def delta_weight(self) -> torch.Tensor:
        # ifft2 needs float32; PEFT's get_delta_weight computes in float32 too.
        spectrum = self.fourierft_spectrum
        dense = torch.zeros(self.out_features, self.in_features, device=spectrum.device)
        dense[self.indices[0], self.indices[1]] = spectrum.float()
        return (torch.fft.ifft2(dense).real * self.scaling).to(spectrum.dtype)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight())


class FourierFT(LinearAdapterMethod):
    Params = FourierFTParams

    layer = FourierFTLinear

    def expected_trainable_params(self, shapes) -> int:
        return self.params.n_frequency * len(shapes)
