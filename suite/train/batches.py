"""Deterministic batches of an encoded split, made by its task type's collator.

Collators pad each batch to its longest row (dynamic padding, suite/tasks/encoding.py),
never to the task's max_length; attention masks and mean pooling exclude the padding, so
a model's outputs do not depend on how far a batch is padded (tests/test_batches.py).

Length bucketing (`Budget.length_bucket_window`, off by default) sorts each window of
that many shuffled batches by length before cutting it into batches, so rows of similar
length share a batch and less is padded. Each epoch still trains on the same examples as
without it (the same permutation, the same dropped remainder), but the order in which
they come and which examples share a batch change: a bucketed cell is another protocol
(the option is in the budget, so in the cell id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from suite.tasks.encoding import EncodedSplit

Collate = Callable[[EncodedSplit, np.ndarray, int], dict]


def eval_batches(split: EncodedSplit, batch_size: int, pad_id: int, collate: Collate) -> list[dict]:
    """Fixed batches in data order: evaluation batch composition is part of the protocol."""
    order = np.arange(len(split))
    return [
        collate(split, order[i : i + batch_size], pad_id) for i in range(0, len(split), batch_size)
    ]


def train_batches(
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    collate: Collate,
    seed: int,
    bucket_window: int | None = None,
) -> Iterator[dict]:
    """An endless stream of shuffled batches, reshuffled each epoch from the cell's seed."""
    for idx in train_order(split, batch_size, seed, bucket_window):
        yield collate(split, idx, pad_id)


def train_order(
    split: EncodedSplit, batch_size: int, seed: int, bucket_window: int | None = None
) -> Iterator[np.ndarray]:
    """The example indices of each training batch, endlessly (see `train_batches`)."""
    rng = np.random.default_rng(seed)
    lengths = example_lengths(split) if bucket_window else None
    epoch = 0
    while True:
        order = rng.permutation(len(split))
        # Drop the last partial batch so every step sees batch_size examples.
        starts = range(0, max(len(order) - batch_size + 1, 1), batch_size)
        if lengths is not None:
            kept = order[: starts[-1] + batch_size] if len(order) >= batch_size else order
            order = _bucketed(kept, lengths, batch_size, bucket_window, (seed, epoch))
        for i in starts:
            yield order[i : i + batch_size]
        epoch += 1


def _bucketed(
    order: np.ndarray, lengths: np.ndarray, batch_size: int, window: int, key: tuple[int, int]
) -> np.ndarray:
    """`order` with each window of `window` batches sorted by length (stable), and the
    window's batches then shuffled (their own generator: the epoch permutations stay
    those of the unbucketed stream)."""
    rng = np.random.default_rng(key)
    span = window * batch_size
    out = []
    for w in range(0, len(order), span):
        chunk = order[w : w + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        out += [batches[j] for j in rng.permutation(len(batches))]
    return np.concatenate(out) if out else order


def example_lengths(split: EncodedSplit) -> np.ndarray:
    """Tokens per example: its longest sequence (an example's choices are several);
    zeros where rows have no token lists (pixels, fixed-length streams)."""
    if not split.input_ids:
        return np.zeros(len(split), dtype=np.int64)
    seq = np.array([len(r) for r in split.input_ids], dtype=np.int64)
    counts = split.extra.get("counts")
    if counts is None:
        return seq
    offsets = np.asarray(split.extra["offsets"])
    return np.array([seq[o : o + c].max() for o, c in zip(offsets, counts, strict=True)])


def to_device(stream: Iterator[dict], device) -> Iterator[dict]:
    """Each batch of `stream` on `device`, moved as it is drawn."""
    for batch in stream:
        yield {k: v.to(device) for k, v in batch.items()}


def on_device(batches: list[dict], device) -> list[dict]:
    """Every batch of a fixed list on `device` (evaluation runs them more than once)."""
    return [{k: v.to(device) for k, v in b.items()} for b in batches]
