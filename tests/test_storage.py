"""Compressed base storage (suite/models/storage.py): codecs against bitsandbytes and by
hand, stored layers, bytes as stored, the matrix axis and the runner's refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite.cells import expand
from suite.models.storage import (
    CODECS,
    StoredEmbedding,
    StoredLinear,
    apply_storage,
    module_bytes,
    parameter_count,
)
from suite.specs.matrix import MatrixSpec
from tests.helpers import catalog


def _weight(rows=1536, cols=384, seed=0):
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)


def test_nf4_matches_bitsandbytes_nf4_with_double_quantisation():
    """bitsandbytes' own NF4 (blocksize 64, compress_statistics: QLoRA's double
    quantisation) on CPU: the same 4-bit codes but for values at a rounding midpoint,
    and the same reconstruction error (the scalers' second quantisation differs: bnb's
    dynamic 8-bit code, torchao's linear int8 per 256 scalers)."""
    bnb_f = pytest.importorskip("bitsandbytes.functional")
    w = _weight()
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    theirs = bnb_f.dequantize_4bit(packed, state)
    codec = CODECS["nf4"]()
    data, extras = codec.encode(w)
    ours = codec.decode(data, extras, w.shape)
    assert state.nested and state.blocksize == 64
    mine, bnb = data.quantized_data, packed.flatten()
    codes = torch.stack([mine >> 4, mine & 15], -1), torch.stack([bnb >> 4, bnb & 15], -1)
    assert (codes[0] == codes[1]).float().mean() > 0.99
    # The same 16 NormalFloat levels (torchao holds them in the compute dtype, bf16).
    assert torch.allclose(data.nf4.float(), state.code.float(), atol=2**-8)
    err_ours = (ours.float() - w.float()).abs().mean()
    err_bnb = (theirs.float() - w.float()).abs().mean()
    assert abs(err_ours - err_bnb) / err_bnb < 0.02


def test_nf4_bytes_by_hand():
    # 4 bits per weight, an int8 scaler per 64 weights, a bf16 factor per 256 scalers,
    # a bf16 scaler mean and the 16-entry bf16 code.
    n = 1536 * 384
    expected = n // 2 + n // 64 + 2 * (n // 64 // 256) + 2 + 16 * 2
    lin = nn.Linear(384, 1536, bias=False)
    assert module_bytes(StoredLinear(lin, CODECS["nf4"]())) == expected
    assert expected / (2 * n) < 0.26


@pytest.mark.parametrize(("name", "tol"), [("int8", 1 / 127), ("fp8", 1 / 8)])
def test_row_scaled_codecs_by_hand(name, tol):
    w = _weight(64, 128).float()
    codec = CODECS[name]()
    data, extras = codec.encode(w)
    back = codec.decode(data, extras, w.shape).float()
    row_max = w.abs().amax(dim=1, keepdim=True)
    # Round to nearest: int8 within half a step (max/127/2); e4m3 within 2^-4 relative.
    assert ((back - w).abs() <= tol * row_max + 1e-2 * row_max).all()
    lin = nn.Linear(128, 64, bias=False)
    # One byte per weight and a bf16 scale per row.
    assert module_bytes(StoredLinear(lin, codec)) == 64 * 128 + 64 * 2


@pytest.mark.parametrize("name", ["nf4", "int8", "fp8"])
def test_stored_linear_forward_backward_and_merge_roundtrip(name):
    torch.manual_seed(0)
    lin = nn.Linear(384, 256)
    layer = StoredLinear(lin, CODECS[name]())
    w = layer.weight.float()
    x = torch.randn(3, 384, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    expected = (x.detach().float() @ w.T + layer.bias.float()).to(torch.bfloat16)
    assert torch.allclose(y.float(), expected.float(), atol=0.06, rtol=0.02)
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.allclose(x.grad.float(), (g.float() @ w), atol=0.06, rtol=0.02)
    with pytest.raises(RuntimeError, match="[Ii]nplace"):
        layer.weight.add_(1.0)  # an edit of the dequantised view must not be lost silently
    saved = layer.snapshot()
    layer.assign(w + 0.25)
    assert not torch.equal(layer.weight, w.to(layer.weight.dtype))
    layer.restore(saved)
    assert torch.equal(layer.weight.float(), w)
    merged = w + 0.125
    layer.merge_dense(merged)  # a merge holds W' densely: outputs do not move
    assert torch.equal(layer.weight, merged) and layer.stored.codec.name == "dense"
    layer.restore(saved)
    assert torch.equal(layer.weight.float(), w)


@pytest.mark.parametrize("name", ["nf4", "int8", "fp8"])
def test_stored_embedding_decodes_only_rows_it_looks_up(name):
    emb = nn.Embedding(1000, 384)
    stored = StoredEmbedding(emb, CODECS[name]())
    idx = torch.tensor([[0, 7, 999], [3, 3, 512]])
    assert torch.equal(stored(idx), stored.weight[idx])


def test_apply_storage_stores_every_matrix_once_and_counts_logical_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(100, 64), nn.Linear(64, 64), nn.LayerNorm(64))
    head = nn.Linear(64, 100, bias=False)
    head.weight = model[0].weight  # tied, as an LM head and its embedding
    model.append(head)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    apply_storage(model, "nf4")
    assert isinstance(model[0], StoredEmbedding) and isinstance(model[1], StoredLinear)
    assert model[3].stored is model[0].stored
    assert parameter_count(model) == n_params
    assert model[2].weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown base storage 'nf3'; choose one of"):
        apply_storage(model, "nf3")


def _matrix(**over) -> MatrixSpec:
    base = dict(name="m", models=["minilm-l6"], methods=["lora", "qlora"], tasks=["drug-condition"])
    return MatrixSpec.model_validate({"seeds": [0], **base, **over})


def test_base_storage_axis_expands_like_models():
    plain = expand(_matrix(methods=["lora"]), catalog())
    axis = expand(_matrix(base_storage=["bf16", "nf4"]), catalog())
    # lora on each storage (labelled apart), qlora on its own nf4 only.
    assert [(c.method.label, c.base_storage) for c in axis] == [
        ("lora@bf16", "bf16"),
        ("lora@nf4", "nf4"),
        ("qlora", "nf4"),
    ]
    assert len({c.cell_id for c in axis}) == 3
    assert plain[0].base_storage is None and plain[0].cell_id not in {c.cell_id for c in axis}
    one = expand(_matrix(methods=["lora"], base_storage=["nf4"]), catalog())
    assert one[0].method.label == "lora" and one[0].cell_id != plain[0].cell_id
    with pytest.raises(ValueError, match="base_storage repeats"):
        _matrix(base_storage=["nf4", "nf4"])


def test_cell_with_unset_storage_keeps_its_id():
    """An unset base storage stays out of the hash (tests/test_expand.py pins the ids)."""
    cell = expand(_matrix(methods=["lora"]), catalog())[0]
    assert "base_storage" not in cell.model_dump(mode="json", exclude_none=True)
    assert cell.model_copy(update={"base_storage": "bf16"}).cell_id != cell.cell_id


def test_runner_refuses_a_method_that_trains_compressed_codes():
    from suite.methods.api import Prepared
    from suite.train.prepare import _base_fields

    cell = expand(_matrix(methods=["qlora"]), catalog())[0]
    model = nn.Module()
    model.backbone = apply_storage(nn.Sequential(nn.Linear(64, 64)), "int8")
    model.backbone[0].bias.requires_grad_(False)
    fields = _base_fields(cell, Prepared(model=model))
    # int8 codes, a bf16 scale per row, the frozen bf16 bias.
    assert fields["base_storage"] == "nf4" and fields["base_bytes"] == 64 * 64 + 64 * 2 + 64 * 2
    model.backbone[0].bias.requires_grad_(True)
    assert _base_fields(cell, Prepared(model=model))["base_bytes"] == 64 * 64 + 64 * 2
    nf4 = apply_storage(nn.Sequential(nn.Linear(64, 256)), "nf4")
    nf4[0].stored.data.requires_grad = True
    model.backbone = nf4
    with pytest.raises(ValueError, match="trains weights of the nf4 base .* keeps frozen"):
        _base_fields(cell, Prepared(model=model))
