"""Training and evaluation batches: dynamic padding leaves the examples, their order and
the model's outputs as they were; length bucketing keeps each epoch's examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.models.taskmodel import TaskModel
from suite.specs.budget import Budget
from suite.tasks.encoding import EncodedSplit, collate_text_classes
from suite.train.batches import eval_batches, example_lengths, train_batches, train_order
from tests.helpers import tiny_bert_backbone

MAX_LENGTH = 64


def _split(n: int = 40, seed: int = 0) -> EncodedSplit:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, size=n)
    ids = [[2, *rng.integers(5, 99, size=k - 2).tolist(), 3] for k in lengths]
    # Labels are the example's index, so a batch tells which examples it holds.
    return EncodedSplit(ids, None, np.arange(n))


def _old_order(n: int, batch_size: int, seed: int, steps: int) -> list[list[int]]:
    """The stream as it was before bucketing existed (pinned: same seed, same batches)."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < steps:
        order = rng.permutation(n)
        for i in range(0, max(n - batch_size + 1, 1), batch_size):
            out.append(order[i : i + batch_size].tolist())
    return out[:steps]


def _take(stream, steps: int) -> list:
    return [next(stream) for _ in range(steps)]


def test_batches_pad_to_their_longest_row_not_max_length():
    split = _split()
    for batch in _take(train_batches(split, 8, 0, collate_text_classes, seed=3), 10):
        rows = [split.input_ids[i] for i in batch["labels"].tolist()]
        assert batch["input_ids"].shape[1] == max(len(r) for r in rows) < MAX_LENGTH
        assert batch["attention_mask"].sum().item() == sum(len(r) for r in rows)
    for batch in eval_batches(split, 16, 0, collate_text_classes):
        assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max())


@pytest.mark.parametrize("seed", [0, 7])
def test_examples_and_order_per_seed_are_unchanged(seed: int):
    split = _split(n=37)
    got = [
        b["labels"].tolist()
        for b in _take(train_batches(split, 8, 0, collate_text_classes, seed), 20)
    ]
    assert got == _old_order(37, 8, seed, 20)
    # An unset window is the same stream.
    assert [i.tolist() for i in _take(train_order(split, 8, seed, None), 20)] == got


def test_bucketing_keeps_each_epochs_examples_and_pads_less():
    split, batch_size, per_epoch = _split(n=64), 8, 8
    plain = _take(train_order(split, batch_size, 5), 3 * per_epoch)
    bucketed = _take(train_order(split, batch_size, 5, bucket_window=4), 3 * per_epoch)
    lengths = example_lengths(split)
    for epoch in range(3):
        span = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
        assert sorted(np.concatenate(bucketed[span])) == sorted(np.concatenate(plain[span]))
    assert [b.tolist() for b in bucketed] != [b.tolist() for b in plain]  # said in its doc

    def padded(batches) -> int:
        return sum(len(b) * lengths[b].max() for b in batches)

    assert padded(bucketed) < padded(plain)


def test_bucketing_is_in_the_cell_id_only_when_set():
    from suite.cells import semantic

    assert "length_bucket_window" not in semantic(Budget().model_dump(mode="json"))
    assert (
        semantic(Budget(length_bucket_window=4).model_dump(mode="json"))["length_bucket_window"]
        == 4
    )


def _pad_to(batch: dict, width: int) -> dict:
    extra = width - batch["input_ids"].shape[1]
    return {
        **batch,
        "input_ids": F.pad(batch["input_ids"], (0, extra), value=0),
        "attention_mask": F.pad(batch["attention_mask"], (0, extra), value=0),
    }


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_outputs_and_loss_do_not_depend_on_padding_width(pooling: str):
    model = TaskModel(tiny_bert_backbone(), 3, pooling, seed=0).eval()
    split = _split(n=8)
    split = EncodedSplit(split.input_ids, None, np.arange(8) % 3)
    batch = collate_text_classes(split, np.arange(8), 0)
    wide = _pad_to(batch, MAX_LENGTH)
    assert wide["input_ids"].shape[1] > batch["input_ids"].shape[1]
    with torch.no_grad():
        a, b = model(**batch), model(**wide)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        F.cross_entropy(a, batch["labels"]), F.cross_entropy(b, batch["labels"])
    )


def test_real_tokens_are_counted_apart_from_padding():
    from suite.train.fit import counted

    split = _split(n=16)
    batches = eval_batches(split, 8, 0, collate_text_classes)
    tokens = [0, 0, 0, 0]  # padded, real; the LM head's positions (none here)
    list(counted(iter(batches), tokens))
    assert tokens[1] == sum(len(r) for r in split.input_ids)
    assert tokens[0] == sum(b["input_ids"].numel() for b in batches) > tokens[1]
