"""Result rows for cells that never returned one themselves: timeouts and crashed workers.

A cell's own exceptions (failed), non-finite losses (nan) and out-of-memory errors (oom)
become rows inside the runner; these are the cases where the driver has to speak for it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from suite.cells import Cell
from suite.results import CellResult


class CellTimeout(BaseException):  # noqa: N818 - BaseException so the runner's `except Exception` lets it through
    """Raised inside an in-process cell when its timeout expires."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def timeout_result(cell: Cell, elapsed_s: float, **where) -> CellResult:
    return CellResult(
        cell_id=cell.cell_id,
        status="timeout",
        error=f"cell ran longer than its timeout of {cell.timeout_s:g} s (stopped at "
        f"{elapsed_s:.1f} s)",
        cell_wall_s=elapsed_s,
        started_at=where.pop("started_at", None) or _now(),
        **where,
    )


def crashed_result(cell: Cell, error: str, attempts: int, **where) -> CellResult:
    return CellResult(
        cell_id=cell.cell_id,
        status="crashed",
        error=f"worker process died {attempts} time(s) running this cell; last error: "
        + error[:1500],
        attempts=attempts,
        started_at=where.pop("started_at", None) or _now(),
        **where,
    )


@contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise CellTimeout in this (main) thread after `seconds`; no-op if None."""
    if not seconds:
        yield
        return

    def _fire(signum, frame):
        raise CellTimeout()

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
