"""Per-equation tests for WaRA (docs/methods-new.md): what the conformance suite cannot
see, on fixed tensors whose expected values are derived by hand here, never by the
implementation's own formula."""

from __future__ import annotations

import math

import pytest
import torch

from tests.support.methods import impl

R2 = math.sqrt(2)


def test_wara_haar_transform_by_hand():
    analysis = impl("wara").haar_analysis
    low, high = analysis(torch.tensor([1.0, 3.0, 5.0, 7.0]))
    assert torch.allclose(low, torch.tensor([4 / R2, 12 / R2]))
    assert torch.allclose(high, torch.tensor([-2 / R2, -2 / R2]))
    # An odd length is zero-padded: [1, 3, 5, 0].
    low, high = analysis(torch.tensor([1.0, 3.0, 5.0]))
    assert torch.allclose(low, torch.tensor([4 / R2, 5 / R2]))
    assert torch.allclose(high, torch.tensor([-2 / R2, 5 / R2]))


@pytest.mark.parametrize("length", [6, 7])
def test_wara_dwt_idwt_reconstruct_perfectly_in_1d_and_2d(length):
    mod = impl("wara")
    x = torch.randn(3, length, length + 2, generator=torch.Generator().manual_seed(length))
    for dim in (1, 2):
        low, high = mod.haar_analysis(x, dim)
        assert torch.allclose(mod.haar_synthesis(low, high, x.shape[dim], dim), x, atol=1e-6)
        # Orthonormal: the energy is kept (the padded zero adds none).
        assert torch.allclose(low.square().sum() + high.square().sum(), x.square().sum())
    subbands = dwt2(mod, x)
    assert torch.allclose(idwt2(mod, subbands, x.shape[1], x.shape[2]), x, atol=1e-6)


def dwt2(mod, x):
    """Single-level 2-D Haar DWT over (tokens, features) = dims (1, 2): LL, LH, HL, HH."""
    lo_t, hi_t = mod.haar_analysis(x, 1)
    return [*mod.haar_analysis(lo_t, 2), *mod.haar_analysis(hi_t, 2)]


def idwt2(mod, bands, tokens: int, features: int):
    ll, lh, hl, hh = bands
    lo_t = mod.haar_synthesis(ll, lh, features, 2)
    hi_t = mod.haar_synthesis(hl, hh, features, 2)
    return mod.haar_synthesis(lo_t, hi_t, tokens, 1)


def wara_layer(d_in=7, d_out=5, r=2, seed=0):
    mod = impl("wara")
    layer = mod.WaRALinear(torch.nn.Linear(d_in, d_out), mod.WaRAParams(r=r, alpha=3.0))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_A.weight.copy_(torch.randn(r, (d_in + 1) // 2, generator=gen))
        layer.lora_B.weight.copy_(torch.randn((d_out + 1) // 2, r, generator=gen))
    return mod, layer


def test_wara_update_equals_the_figures_2d_transform_over_tokens_and_features():
    # v1's figure, literally: X (tokens x d_in) -> 2-D DWT -> B A on every subband's
    # feature axis -> 2-D IDWT (tokens x d_out), times alpha / r. Odd sizes everywhere.
    mod, layer = wara_layer()
    x = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(3))
    m = layer.lora_B.weight @ layer.lora_A.weight
    bands = [band @ m.T for band in dwt2(mod, x)]
    literal = idwt2(mod, bands, tokens=5, features=5) * (3.0 / 2)
    assert torch.allclose(layer.update(x), literal, atol=1e-5)


def haar_matrix(n: int) -> torch.Tensor:
    """The Haar analysis matrix (2 half(n) x n) written out: low rows, then high rows."""
    h = (n + 1) // 2
    mat = torch.zeros(2 * h, 2 * h)
    for j in range(h):
        mat[j, 2 * j], mat[j, 2 * j + 1] = 1 / R2, 1 / R2
        mat[h + j, 2 * j], mat[h + j, 2 * j + 1] = 1 / R2, -1 / R2
    return mat[:, :n]


def test_wara_delta_weight_is_the_block_diagonal_update_in_the_haar_basis():
    _, layer = wara_layer()
    m = layer.lora_B.weight @ layer.lora_A.weight
    h_in, h_out = haar_matrix(7), haar_matrix(5)
    # Synthesis is the transpose of analysis (orthonormal), cropped to d_out rows.
    expected = h_out.T @ torch.block_diag(m, m) @ h_in * (3.0 / 2)
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-5)
    x = torch.randn(4, 7)
    assert torch.allclose(layer.update(x), x @ expected.T, atol=1e-5)
