"""TLoRA (reconstructed): the tensor-ring-matrix transform and tensor-ring residual
against explicit ring traces, the identity / zero init, merging, and the count."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from suite.paths import SOURCE_ROOT
from suite.plugins import load_object

FOLDER = SOURCE_ROOT / "methods" / "tlora"
balanced_factors, identity_trm_cores, tr_matrix, trm_matrix = (
    load_object(f"tensor.py:{name}", FOLDER)
    for name in ("balanced_factors", "identity_trm_cores", "tr_matrix", "trm_matrix")
)  # fmt: skip
TLoRALinear, TLoRAParams, TLoRA = (
    load_object(f"impl.py:{name}", FOLDER) for name in ("TLoRALinear", "TLoRAParams", "TLoRA")
)  # fmt: skip


def _digits(index: int, dims: list[int]) -> list[int]:
    """Mixed-radix digits of `index`, the first dimension most significant."""
    out = []
    for n in reversed(dims):
        out.append(index % n)
        index //= n
    return out[::-1]


@pytest.mark.parametrize(("n", "order", "expected"), [
    (384, 4, [6, 4, 4, 4]), (1536, 4, [8, 8, 6, 4]), (12, 2, [4, 3]), (7, 2, [7, 1]),
])  # fmt: skip
def test_balanced_factors(n, order, expected):
    assert balanced_factors(n, order) == expected


def test_trm_entries_are_the_trace_of_the_core_slices():
    gen = torch.Generator().manual_seed(0)
    dims, rank = [3, 2, 2], 2
    cores = [torch.randn(n, n, rank, rank, generator=gen, dtype=torch.float64) for n in dims]
    t = trm_matrix(cores)
    assert t.shape == (12, 12)
    for i, j in itertools.product(range(12), repeat=2):
        mats = [c[a, b] for c, a, b in zip(cores, _digits(i, dims), _digits(j, dims), strict=True)]
        assert t[i, j] == pytest.approx(float(torch.linalg.multi_dot(mats).trace()), abs=1e-12)


def test_tr_entries_are_the_trace_of_row_then_column_cores():
    gen = torch.Generator().manual_seed(1)
    outs, ins, rank = [3, 2], [2, 2], 3
    rows = [torch.randn(n, rank, rank, generator=gen, dtype=torch.float64) for n in outs]
    cols = [torch.randn(n, rank, rank, generator=gen, dtype=torch.float64) for n in ins]
    delta = tr_matrix(rows, cols)
    assert delta.shape == (6, 4)
    for o, i in itertools.product(range(6), range(4)):
        mats = [c[d] for c, d in zip(rows, _digits(o, outs), strict=True)]
        mats += [c[d] for c, d in zip(cols, _digits(i, ins), strict=True)]
        assert delta[o, i] == pytest.approx(float(torch.linalg.multi_dot(mats).trace()), abs=1e-12)


@pytest.mark.parametrize(("dims", "rank"), [([4, 3], 2), ([2, 2, 2], 3), ([5], 4)])
def test_identity_cores_give_the_identity(dims, rank):
    n = int(torch.tensor(dims).prod())
    torch.testing.assert_close(trm_matrix(identity_trm_cores(dims, rank)), torch.eye(n))


def _layer(d_out=12, d_in=8, **params):
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out)
    p = TLoRAParams(**{"rank": 2, "order": 2, **params})
    return base, TLoRALinear(base, p, torch.Generator().manual_seed(0))


def test_the_layer_starts_as_the_base_and_merges_exactly():
    base, layer = _layer()
    x = torch.randn(5, 8)
    torch.testing.assert_close(layer(x), base(x))
    # the first residual core is zero, yet it gets a gradient (the others are random)
    layer(x).square().sum().backward()
    assert layer.tlora_rows[0].grad.abs().sum() > 0
    assert all(c.grad.abs().sum() > 0 for c in layer.tlora_transform)
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    unmerged = layer(x)
    expected = x @ (base.weight @ layer.transform() + layer.residual()).T + base.bias
    torch.testing.assert_close(unmerged, expected)
    layer.merge()
    torch.testing.assert_close(layer(x), unmerged, atol=1e-5, rtol=1e-5)


def test_trainable_count_matches_a_hand_derived_table():
    # 12 x 8, rank 2, order 2: in 8 = 4 x 2, out 12 = 4 x 3;
    # R^2 (4^2 + 2^2 + (4 + 2) + (4 + 3)) = 4 x 33 = 132
    _, layer = _layer()
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == 132
    method = TLoRA(TLoRAParams(rank=2, order=2))
    assert method.expected_trainable_params([(12, 8)]) == 132
    # minilm's 384 x 384 at the defaults (rank 2, order 4): 4 (36 + 3 x 16 + 18 + 18) = 480
    assert TLoRA(TLoRAParams()).expected_trainable_params([(384, 384)]) == 480
