"""The training budget a matrix gives every method (its own module: matrices and
post-hoc stages both declare one)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

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
    # Mixed precision (suite/train/precision.py): forward passes (training, evaluation,
    # latency) autocast to bf16 while weights, adapters, gradients and the optimiser stay
    # in the base's dtype (fp32 masters); FLOP/s is compared with the bf16 peak. Another
    # protocol than fp32 (in the cell id); None (off) keeps ids.
    autocast: Literal["bf16"] | None = None


def budget_tag(budget: dict[str, Any]) -> str:
    """Eight hex digits naming a budget by its set fields (a `Budget` dumped, or the JSON a
    row stores), so an ad-hoc matrix's default protocol changes whenever its budget does
    and an older store's rows get the same name from their stored budget."""
    data = {k: v for k, v in budget.items() if v is not None}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_protocol(matrix: str, budget: dict[str, Any]) -> str:
    """The protocol of a matrix that declares none: `<matrix>@<budget tag>`. A declared
    protocol is a `Name`, which never contains '@', so the two never collide."""
    return f"{matrix}@{budget_tag(budget)}"
