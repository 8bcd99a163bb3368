"""GEM's summaries of an accuracy matrix (Lopez-Paz and Ranzato, 2017, section 2).

R[i][j] is the test score on task j after training through task i (0-based here; the
paper counts from 1), for every j, seen or not; b[j] is the score on task j before any
training (the paper's "random initialisation": here the base model with task j's freshly
initialised head). With T tasks:

- ACC = 1/T sum_j R[T-1][j]                       (average accuracy at the end)
- BWT = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])  (backward transfer; < 0 is forgetting)
- FWT = 1/(T-1) sum_{j>=1} (R[j-1][j] - b[j])      (forward transfer: what the tasks
  before j did for j, before j was trained on)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Transfer:
    acc: float
    bwt: float
    fwt: float


def check_matrix(r: Sequence[Sequence[float]], b: Sequence[float]) -> int:
    """The task count T of a T x T matrix with a length-T baseline vector, T >= 2."""
    t = len(r)
    if t < 2:
        raise ValueError(f"an accuracy matrix needs at least 2 tasks, got {t}")
    bad = [i for i, row in enumerate(r) if len(row) != t]
    if bad:
        raise ValueError(f"the accuracy matrix is not {t} x {t}: row {bad[0]} has {len(r[bad[0]])}")
    if len(b) != t:
        raise ValueError(f"the baseline vector has {len(b)} entries for {t} tasks")
    return t


def transfer(r: Sequence[Sequence[float]], b: Sequence[float]) -> Transfer:
    """ACC, BWT and FWT of the accuracy matrix `r` against the baseline vector `b`."""
    t = check_matrix(r, b)
    last = r[t - 1]
    return Transfer(
        acc=sum(last) / t,
        bwt=sum(last[j] - r[j][j] for j in range(t - 1)) / (t - 1),
        fwt=sum(r[j - 1][j] - b[j] for j in range(1, t)) / (t - 1),
    )
