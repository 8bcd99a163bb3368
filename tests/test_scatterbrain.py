"""Scatterbrain as a compress stage: the swap through transformers' attention interface on
a tiny BERT, the band's share as the level, exactness when the band covers every key,
and the refusal of a causal mask."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from suite.conformance_bench import random_batches, tiny_bert_backbone
from suite.paths import SOURCE_ROOT
from suite.plugins import load_object
from suite.posthoc.calibrate import Calibration
from tests.helpers import catalog

FOLDER = SOURCE_ROOT / "posthoc" / "scatterbrain"
exact_pairs, orthogonal_gaussian, sblocal_attention = (
    load_object(f"attention.py:{name}", FOLDER)
    for name in ("exact_pairs", "orthogonal_gaussian", "sblocal_attention")
)  # fmt: skip
key_mask = load_object("impl.py:key_mask", FOLDER)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = tiny_bert_backbone()

    def forward(self, input_ids, attention_mask, **_):
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _compress(model: _Model, batches: list[dict], **params):
    entry = catalog().posthoc.get("scatterbrain")
    cls = load_object(entry.spec.implementation, entry.folder)
    method = cls(cls.Params.model_validate({**entry.spec.params, **params}))
    ctx = SimpleNamespace(seed=0, calibration=Calibration(batches, run=lambda b: model(**b)))
    return method.compress(model, ctx)


def _softmax_attention(q, k, v, keep, temp):
    scores = (q @ k.transpose(-1, -2) * temp).masked_fill(~keep[:, None, None, :], -torch.inf)
    return scores.softmax(dim=-1) @ v


def test_a_band_over_every_key_is_exact_softmax_attention():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=gen) for _ in range(3))
    keep = torch.arange(10)[None, :] < torch.tensor([[10], [7]])
    projection = orthogonal_gaussian(8, 8, gen)
    out = sblocal_attention(q, k, v, keep, projection, context=21, temp=8**-0.5)
    torch.testing.assert_close(
        out, _softmax_attention(q, k, v, keep, 8**-0.5), atol=1e-5, rtol=1e-4
    )


def test_exact_pairs_counts_the_band_over_real_tokens():
    # window of 4 around t: t-2 .. t+1; a 6-token row scores 2+3+4+4+4+3 = 20 pairs exactly
    keep = torch.arange(12)[None, :] < torch.tensor([[6], [12]])
    assert exact_pairs(keep, 4) == (20 + (2 + 3 + 4 * 9 + 3), 36 + 144)


def test_the_swap_replaces_every_attention_module_and_keeps_the_weights():
    batches = random_batches(n_batches=2, batch=4, length=12, vocab=100)
    model = _Model()
    dense = model(**batches[0])
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = _compress(model, batches, local_context=4, nb_features=8)
    assert "2 attention modules swapped" in result.notes
    # lengths 6, 12, 12, 12 in every batch: 152 of 468 scores in the band
    assert result.level == pytest.approx(1 - 152 / 468)
    assert (result.pruned, result.total) == (0, 0)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    approx = model(**batches[0])
    # the random tiny BERT attends almost uniformly, so the approximation is close, not equal
    assert float((approx - dense).abs().max()) > 1e-6
    assert torch.isfinite(approx).all()


def test_a_band_wider_than_the_sequence_leaves_the_model_unchanged():
    batches = random_batches(n_batches=1, batch=4, length=12, vocab=100)
    model = _Model()
    dense = model(**batches[0])
    _compress(model, batches, local_context=25, nb_features=8)
    real = batches[0]["attention_mask"].bool()
    torch.testing.assert_close(model(**batches[0])[real], dense[real], atol=1e-4, rtol=1e-4)


def test_a_causal_mask_is_refused_with_the_reason():
    causal = torch.tril(torch.ones(5, 5, dtype=torch.bool))[None, None].expand(2, 1, 5, 5)
    with pytest.raises(ValueError, match="bidirectional attention over padded sequences"):
        key_mask(causal, 2, 5, "cpu")
    padding = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(key_mask(padding[:, None, None, :], 2, 5, "cpu"), padding)
