"""Tokenised splits and deterministic batches (padding to the longest row of each batch)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from suite.specs.task import TaskSpec


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids per example (unpadded) and labels.

    `kind` names the collator (suite.tasks.encoding.COLLATORS) that turns examples into a
    batch; `extra` holds what that kind needs (choice sequences, target masks, pixels).
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    kind: str = "text"
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def encode(task: TaskSpec, frame: pd.DataFrame, tokenizer) -> EncodedSplit:
    """Encode a split the way its task type needs (suite.tasks.encoding.ENCODERS)."""
    from suite.tasks.encoding import ENCODERS

    return ENCODERS[task.type](task, frame, tokenizer)


def encode_text(task: TaskSpec, frame: pd.DataFrame, tokenizer) -> EncodedSplit:
    texts = [frame[f].astype(str).tolist() for f in task.text_fields]
    enc = tokenizer(*texts, truncation=True, max_length=task.max_length)
    types = enc.get("token_type_ids")
    return EncodedSplit(enc["input_ids"], types, frame["label"].to_numpy())


def collate(split: EncodedSplit, idx: np.ndarray, pad_id: int, regression: bool) -> dict:
    if split.kind != "text":
        from suite.tasks.encoding import COLLATORS

        return COLLATORS[split.kind](split, idx, pad_id)
    rows = [split.input_ids[i] for i in idx]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r)
        mask[j, : len(r)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if split.token_type_ids is not None:
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(idx):
            types[j, : len(split.token_type_ids[i])] = torch.tensor(split.token_type_ids[i])
        batch["token_type_ids"] = types
    labels = split.labels[idx]
    batch["labels"] = torch.tensor(labels, dtype=torch.float32 if regression else torch.long)
    return batch


def eval_batches(split: EncodedSplit, batch_size: int, pad_id: int, regression: bool) -> list[dict]:
    """Fixed batches in data order: evaluation batch composition is part of the protocol."""
    order = np.arange(len(split))
    return [
        collate(split, order[i : i + batch_size], pad_id, regression)
        for i in range(0, len(split), batch_size)
    ]


def train_batches(
    split: EncodedSplit, batch_size: int, pad_id: int, regression: bool, seed: int
) -> Iterator[dict]:
    """An endless stream of shuffled batches, reshuffled each epoch from the cell's seed."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(split))
        # Drop the last partial batch so every step sees batch_size examples.
        for i in range(0, max(len(order) - batch_size + 1, 1), batch_size):
            yield collate(split, order[i : i + batch_size], pad_id, regression)
