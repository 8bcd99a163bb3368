"""`peftbench run`'s ends: what it prints when the matrix is done (the tables, where the
time went, cells stuck at the majority baseline, the counts), and when it is stopped
(Ctrl-C or SIGTERM): how many cells are stored and the command that resumes."""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.text import Text

from suite.cli_common import console, err_console, fail, print_full

# The exit status of a run stopped by a signal (the shell's 128 + SIGINT).
STOPPED_EXIT = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the driver's main thread so it stops as Ctrl-C does: the cells
    in flight are dropped, the workers released, the stored cells kept."""


def resume_command(argv: list[str] | None = None) -> str:
    """The command that resumes this run: the same one (stored cells are skipped); a
    --rerun is dropped, since it would run the stored cells again."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--rerun"]
    return shlex.join(["peftbench", *args])


def stopped_message(what: str, stored: int, total: int, argv: list[str] | None = None) -> str:
    return (
        f"stopped ({what}): {stored} of the matrix's {total} cells are stored ok; "
        f"resume with the same command (stored cells are skipped):\n  {resume_command(argv)}"
    )


def print_stopped(what: str, the_plan, store) -> None:
    ids = [c.cell_id for c in the_plan.cells]
    try:
        if getattr(the_plan, "federated", False):  # rounds live in their own table
            from suite.federated.plan import stored_count

            stored = stored_count(the_plan.cells, store)
        else:
            stored = len(store.ok_cell_ids(ids))
    except Exception:  # noqa: BLE001 - a busy or half-written store: say what we know
        stored = the_plan.skipped
    # soft_wrap: the command stays one line, to copy whole
    err_console.print(Text(stopped_message(what, stored, len(ids)), style="yellow"), soft_wrap=True)


# The stop signal the run received ("interrupted" or "SIGTERM"), if any: a signal that
# lands inside a DuckDB write surfaces as DuckDB's own "Query interrupted" error.
_received: list[str] = []


def stop_received() -> str | None:
    return _received[-1] if _received else None


def _stop(signum, frame) -> None:
    if signum == signal.SIGTERM:
        _received.append("SIGTERM")
        raise Terminated()
    _received.append("interrupted")
    raise KeyboardInterrupt()


def _route_signals() -> None:
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop)


class StopsOnSignals:
    """An executor whose prepare() routes SIGINT and SIGTERM to the run's stop again once
    Ray has started (its own SIGTERM handler prints a crash dump), and which stores no
    result that arrives after a stop signal: code that turns the interrupt into an error
    (a DuckDB query, a runner catching every Exception) would otherwise let the run go
    on, or store a cell the signal cut short as failed."""

    def __init__(self, inner) -> None:
        self.inner = inner

    # The driver sets the run's log folder on the executor it is given: this wrapper
    # hands it to the executor that runs the cells, whose workers write the live logs.
    @property
    def log_dir(self):
        return self.inner.log_dir

    @log_dir.setter
    def log_dir(self, folder) -> None:
        self.inner.log_dir = folder

    def prepare(self, cells) -> None:
        self.inner.prepare(cells)
        _route_signals()

    def __call__(self, cells, on_result) -> None:
        def unless_stopped(cell, report) -> None:
            if stop_received() is not None:
                raise KeyboardInterrupt()
            on_result(cell, report)

        self.inner(cells, unless_stopped)

    def close(self) -> None:
        self.inner.close()


@contextmanager
def stop_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the run (recorded for stop_received); restored after."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _received.clear()
    _route_signals()
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def report_run(the_plan, summary, db: Path, wide: bool, print_table: Callable) -> int:
    """Print what a finished run did; returns its exit status."""
    from suite.baseline_check import baseline_warnings
    from suite.phase_report import phase_report
    from suite.store.store import Store

    if the_plan.continual and db.exists():
        from suite.continual.table import continual_table

        print_full(continual_table(Store(db), the_plan.matrix, [c.cell_id for c in the_plan.cells]))
    elif getattr(the_plan, "federated", False) and db.exists():
        from suite.federated.table import federated_table

        runs = sorted({c.fed_run for c in the_plan.cells})
        print_full(federated_table(Store(db), the_plan.matrix, runs))
    elif the_plan.cells and db.exists():
        # The plan's cells, also those another matrix stored first (cells dedupe).
        print_table(db, the_plan.matrix, [c.cell_id for c in the_plan.reported_cells], wide)
    if the_plan.posthoc_cells and db.exists():
        from suite.listing import posthoc_table

        ids = [c.cell_id for c in the_plan.posthoc_cells]
        print_full(posthoc_table(Store(db), the_plan.matrix, ids))
    for line in phase_report(zip(summary.titles, summary.results, strict=True)):
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    cells = [*the_plan.cells, *the_plan.phase_cells]
    for line in baseline_warnings(cells, summary.results):
        err_console.print(Text(line, style="yellow"), soft_wrap=True)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts().items())) or "nothing to run"
    err_console.print(f"done: {counts}")
    return 0 if summary.all_ok else 1


def refuse_if_busy(store) -> None:
    """Before planning: a store another run holds is reported at once (its pid and host,
    exit 3), and nothing is created, so a spec error still leaves no file."""
    from suite.store.store import RunLock, StoreBusy

    try:
        RunLock(store.path).refuse_if_held()
    except StoreBusy as exc:
        fail("store busy:", exc, 3)


@contextmanager
def run_lock(store) -> Iterator[None]:
    """Hold the store's run lock for the whole command; a store another run holds is
    reported at once, with that run's pid and host, and exits 3 (run_plan's own take of
    the lock is then re-entrant)."""
    from suite.store.store import RunLock, StoreBusy

    try:
        lock = RunLock(store.path).__enter__()
    except StoreBusy as exc:
        fail("store busy:", exc, 3)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def print_cells(the_plan) -> None:
    """The plan's cells to run, one line each (model, method, task, seed, phase), for
    `run --dry-run`; a tuned matrix's later phases are built from stored trials, so only
    their count of phases is said."""
    for cell in the_plan.todo:
        if cell.kind == "trained":
            line = (
                f"{cell.model.name}  {cell.method.label}  {cell.task.name}  seed {cell.seed}  "
                f"{cell.phase}"
            )
        else:  # a continual, post-hoc or federated cell has no single task: its title
            line = f"{cell.kind}: {cell.title()}"
        console.print(line, markup=False, highlight=False)
    if the_plan.phases:
        console.print(
            f"then {len(the_plan.phases)} later phase(s), built from these cells' results"
        )
