"""The baselines' trainable sets, from outside their implementations: BitFit against its
official code (tests/golden/bitfit, benzakenelad/BitFit), head and full fine-tuning
against counts derived by hand for the conformance suite's tiny BERT."""

from __future__ import annotations

from suite import conformance as C
from tests.helpers import tiny_bench
from tests.support.golden import load_fixture
from tests.test_conformance import built

HIDDEN, LAYERS, INTER, VOCAB, POSITIONS, TYPES, CLASSES = 32, 2, 64, 100, 128, 2, 3


def _trainable(name: str) -> dict[str, int]:
    method, _, _ = built(name)
    prepared = C.prepare(method, tiny_bench())
    return {n: p.numel() for n, p in prepared.model.named_parameters() if p.requires_grad}


def test_golden_bitfit_trains_the_biases_the_official_code_trains():
    fixture = load_fixture("bitfit")
    trained = _trainable("bitfit")
    backbone = sorted(n.removeprefix("backbone.") for n in trained if n.startswith("backbone."))
    # The tiny BERT has no pooler: peftbench's head pools token states itself (a protocol
    # difference of every encoder cell, not of BitFit), so the reference's pooler bias is
    # the one name it trains that this model lacks.
    assert backbone == [n for n in fixture.meta["trained_backbone"] if not n.startswith("pooler.")]
    assert (
        sum(trained[f"backbone.{n}"] for n in backbone) == fixture.meta["backbone_count"] - HIDDEN
    )
    assert {n for n in trained if n.startswith("head.")} == {"head.weight", "head.bias"}


def test_head_trains_the_head_only():
    assert _trainable("head") == {"head.weight": CLASSES * HIDDEN, "head.bias": CLASSES}


def test_full_trains_every_weight():
    per_layer = (
        4 * (HIDDEN * HIDDEN + HIDDEN)  # query, key, value, attention output
        + 2 * 2 * HIDDEN  # two LayerNorms
        + (HIDDEN * INTER + INTER)
        + (INTER * HIDDEN + HIDDEN)  # MLP in and out
    )
    embeddings = (VOCAB + POSITIONS + TYPES) * HIDDEN + 2 * HIDDEN
    head = CLASSES * HIDDEN + CLASSES
    assert sum(_trainable("full").values()) == embeddings + LAYERS * per_layer + head
