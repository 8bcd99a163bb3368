"""Test helpers: tiny models and benches built from configs (no downloads)."""

from __future__ import annotations

import copy
from functools import lru_cache

import torch

from suite.conformance import Bench
from suite.models.taskmodel import TaskModel
from suite.registry import Catalog
from suite.specs.model import ModelPreset

NUM_CLASSES = 3


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return Catalog.discover()


def tiny_preset() -> ModelPreset:
    minilm = catalog().models.get("minilm-l6").spec
    return minilm.model_copy(update={"name": "tiny-bert"})


def tiny_bert_backbone(seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = 100):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertModel(config, add_pooling_layer=False).eval()


def random_batches(
    n_batches: int = 2, batch: int = 4, length: int = 12, vocab: int = 100, seed: int = 0
) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1, vocab, (batch, length), generator=gen)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, length // 2 :] = 0  # one padded row, so pooling masks are exercised
        labels = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def bench_from_backbone(backbone, preset: ModelPreset, vocab: int) -> Bench:
    def build(seed: int) -> TaskModel:
        model = TaskModel(copy.deepcopy(backbone), NUM_CLASSES, preset.pooling, seed)
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        return model

    return Bench(preset=preset, build=build, batches=random_batches(vocab=vocab))


def tiny_bench() -> Bench:
    return bench_from_backbone(tiny_bert_backbone(), tiny_preset(), vocab=100)


@lru_cache(maxsize=1)
def minilm_backbone():
    from suite.models.loading import load_backbone

    return load_backbone(catalog().models.get("minilm-l6").spec).eval()


def minilm_bench() -> Bench:
    preset = catalog().models.get("minilm-l6").spec
    return bench_from_backbone(minilm_backbone(), preset, vocab=30522)
