"""The training budget a matrix gives every method (its own module: matrices and
post-hoc stages both declare one)."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from suite.specs.base import Frozen


class Budget(Frozen):
    """The training budget every method in a matrix gets (stored with every row)."""

    epochs: PositiveFloat = 1.0
    max_steps: PositiveInt | None = None
    batch_size: PositiveInt = 16
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0)
    grad_clip: NonNegativeFloat = 1.0
    max_train_samples: PositiveInt | None = None
    # A budget in training tokens instead of epochs: steps = tokens // (batch_size x the
    # task's max_length), still capped by max_steps. None (unset) keeps older cell ids.
    tokens: PositiveInt | None = None
    # Length bucketing (suite/train/batches.py): sort each window of this many shuffled
    # batches by length, so less is padded. The same examples each epoch, but another
    # order and batch composition, so it is part of the protocol; None (off) keeps ids.
    length_bucket_window: PositiveInt | None = None
