"""Where a cell's time goes inside the runner: one clock, one named phase at a time.

The phases are those of suite/results.py (RUNNER_PHASES); `other` is what none of the
named ones covers (the remainder of the cell's wall time), so they add up exactly and a
large `other` shows a step that is not yet attributed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from suite.results import RUNNER_PHASES


class PhaseClock:
    """Seconds spent per phase; a phase entered twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        # Whether the model and the tokenised data came from the worker's caches.
        self.cached: dict[str, bool] = {}
        self.started = time.perf_counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in RUNNER_PHASES or name == "other":
            raise ValueError(f"unknown phase {name!r}; choose one of {', '.join(RUNNER_PHASES)}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def finish(self, wall_s: float) -> dict[str, float]:
        """Every phase's seconds, with `other` the part of `wall_s` no phase covered."""
        named = {p: self.seconds[p] for p in RUNNER_PHASES if p in self.seconds}
        return {**named, "other": max(wall_s - sum(named.values()), 0.0)}
