"""Deterministic batches of an encoded split, made by its task type's collator."""

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
    split: EncodedSplit, batch_size: int, pad_id: int, collate: Collate, seed: int
) -> Iterator[dict]:
    """An endless stream of shuffled batches, reshuffled each epoch from the cell's seed."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(split))
        # Drop the last partial batch so every step sees batch_size examples.
        for i in range(0, max(len(order) - batch_size + 1, 1), batch_size):
            yield collate(split, order[i : i + batch_size], pad_id)
