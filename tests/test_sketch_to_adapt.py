"""Sketch to Adapt: the tables-and-codes layer (against autograd and by hand), the
weighted Lloyd sketch, and the sketched model's counts and bytes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from suite import conformance as C
from suite.plugins import load_object
from tests.helpers import tiny_bench

IMPL = str(Path(__file__).resolve().parent.parent / "methods" / "sketch-to-adapt")


def _impl():
    return sys.modules[load_object("impl.py:SketchToAdapt", IMPL).__module__]


def test_codes_pack_two_per_byte_high_nibble_first():
    impl = _impl()
    codes = torch.tensor([[[1, 2, 15, 0]]])
    packed = impl.pack_codes(codes)
    # tailor_utils / gather_sub4bit.cu: cache[code >> 4] then cache[code & 0xf].
    assert packed.tolist() == [[[0x12, 0xF0]]] and packed.dtype == torch.uint8
    assert torch.equal(impl.unpack_codes(packed), codes)


def test_table_gradient_is_the_scatter_add_of_the_weight_gradient():
    impl = _impl()
    gen = torch.Generator().manual_seed(0)
    grid = torch.randn(6, 2, 16, generator=gen, requires_grad=True)
    codes = torch.randint(0, 16, (6, 2, 4), generator=gen)
    packed = impl.pack_codes(codes)
    x = torch.randn(3, 5, 8, generator=gen, requires_grad=True)
    out = impl._SketchMatmul.apply(x, grid, packed)
    g = torch.randn_like(out)
    out.backward(g)
    # By autograd through a dense gather: W[i, j] = grid[i, j // 4, codes[i, j // 4, j % 4]].
    grid2 = grid.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    w = torch.gather(grid2, 2, codes).flatten(1)
    (x2 @ w.T).backward(g)
    assert torch.allclose(out, x2 @ w.T, atol=1e-6)
    assert torch.allclose(grid.grad, grid2.grad, atol=1e-5)
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)


def test_weighted_lloyd_centroids_are_weighted_means():
    impl = _impl()
    values = torch.tensor([[0.0, 0.1, 0.2, 10.0, 10.4]])
    weights = torch.tensor([[1.0, 1.0, 2.0, 3.0, 1.0]])
    centroids, codes = impl.weighted_lloyd(values, weights, 2, 10)
    low, high = sorted(centroids[0].tolist())
    assert low == pytest.approx((0.0 + 0.1 + 0.4) / 4) and high == pytest.approx(40.4 / 4)
    assert codes[0, :3].unique().numel() == 1 and codes[0, 3] == codes[0, 4]


def test_sketched_model_counts_and_bytes():
    impl, bench = _impl(), tiny_bench()
    cls = load_object("impl.py:SketchToAdapt", IMPL)
    prepared = C.prepare(cls(cls.Params(targets="qv", gpr=2, calibration_batches=1)), bench)
    q = prepared.model.backbone.encoder.layer[0].attention.self.query
    assert isinstance(q, impl.SketchedLinear)
    assert q.grid.shape == (32, 2, 16) and q.codes.shape == (32, 2, 8)
    trainable = [n for n, p in prepared.model.named_parameters() if p.requires_grad]
    assert all(n.endswith(".grid") or n.startswith("head.") for n in trainable)
    # Tables (fp32) and packed codes (half a byte per weight) replace the 32 x 32 matrix.
    assert q.grid.numel() * 4 + q.codes.numel() == 32 * 2 * 16 * 4 + 32 * 32 // 2
    with pytest.raises(ValueError, match="divisible by 2 x gpr"):
        C.prepare(cls(cls.Params(targets="qv", gpr=3)), bench)
