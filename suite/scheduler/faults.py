"""Reports for cells that never returned one themselves: timeouts and crashed workers.

A cell's own exceptions (failed), non-finite losses (nan) and out-of-memory errors (oom)
are outcomes the runner returns; these are the cases where the executor speaks for it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from suite.cells import Workload
from suite.outcome import error_tail
from suite.results import CellReport, Measured, Placement


class CellTimeout(BaseException):  # noqa: N818 - BaseException so the runner's `except Exception` lets it through
    """Raised inside an in-process cell when its timeout expires."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def timeout_report(
    cell: Workload, elapsed_s: float, where: Placement, started_at: str | None, attempts: int = 1
) -> CellReport:
    error = (
        f"cell ran longer than its timeout of {cell.timeout_s:g} s (stopped at {elapsed_s:.1f} s)"
    )
    measured = Measured(
        status="timeout", error=error, cell_wall_s=elapsed_s, started_at=started_at or _now()
    )
    return CellReport(measured=measured, placement=where, attempts=attempts)


def crashed_report(
    error: str, attempts: int, where: Placement, started_at: str | None
) -> CellReport:
    text = f"worker process died {attempts} time(s) running this cell; last error: {error_tail(error, 1500)}"
    measured = Measured(status="crashed", error=text, started_at=started_at or _now())
    return CellReport(measured=measured, placement=where, attempts=attempts)


def failed_report(error: str, attempts: int = 1) -> CellReport:
    """The worker's own code raised (not the cell's: the runner catches those)."""
    return CellReport(measured=Measured(status="failed", error=error), attempts=attempts)


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
