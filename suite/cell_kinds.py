"""How each kind of cell runs and how its result is stored: one registry, read by the
worker (`run`, suite/scheduler/worker.py) and the driver (`record`, suite/driver.py).

A cell says its kind (`Cell.kind`, `PosthocCell.kind`: a class attribute, so no cell id
moves); a new kind of work is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suite.results import CellReport, CellResult, Measured
from suite.track_results import ContinualMeasured, FederatedMeasured, PosthocMeasured

if TYPE_CHECKING:
    from suite.cells import Workload
    from suite.store.store import Store

StepCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class CellKind:
    # On the worker: run the cell in this process; never raises for the cell's own errors.
    run: Callable[
        [Any, StepCallback | None],
        Measured | PosthocMeasured | ContinualMeasured | FederatedMeasured,
    ]
    # On the driver: store one report (its log at log_path); returns what the run summary
    # and the progress display keep of it.
    record: Callable[[Store, Any, CellReport, dict[str, Any], str], Any]


def _run_trained(cell, on_step: StepCallback | None) -> Measured:
    from suite.train.runner import run_cell

    return run_cell(cell, on_step=on_step)


def _record_trained(store: Store, cell, report: CellReport, prov: dict, log: str) -> CellResult:
    result = CellResult.assemble(cell.cell_id, report, log)
    store.write(cell, result, prov)
    return result


def _run_posthoc(cell, on_step: StepCallback | None) -> PosthocMeasured:
    from suite.posthoc.run import run_posthoc

    return run_posthoc(cell)


def _record_posthoc(store: Store, cell, report: CellReport, prov: dict, log: str):
    from suite.posthoc.plan import outcome

    store.write_posthoc(cell, report, prov, log)
    return outcome(cell, report)


def _run_continual(cell, on_step: StepCallback | None) -> ContinualMeasured:
    from suite.continual.run import run_continual

    return run_continual(cell, on_step=on_step)


def _record_continual(store: Store, cell, report: CellReport, prov: dict, log: str):
    from suite.continual.plan import outcome

    store.write_continual(cell, report, prov, log)
    return outcome(cell, report)


def _run_federated(cell, on_step: StepCallback | None) -> FederatedMeasured:
    from suite.federated.run import run_round

    return run_round(cell)


def _record_federated(store: Store, cell, report: CellReport, prov: dict, log: str):
    from suite.federated.plan import outcome

    store.write_federated(cell, report, prov, log)
    return outcome(cell, report)


CELL_KINDS: dict[str, CellKind] = {
    "trained": CellKind(run=_run_trained, record=_record_trained),
    "posthoc": CellKind(run=_run_posthoc, record=_record_posthoc),
    "continual": CellKind(run=_run_continual, record=_record_continual),
    "federated": CellKind(run=_run_federated, record=_record_federated),
}


def cell_kind(cell: Workload) -> CellKind:
    kind = getattr(cell, "kind", None)
    if kind not in CELL_KINDS:
        raise TypeError(
            f"{type(cell).__name__} is no kind of cell this suite runs (kind {kind!r}; "
            f"known: {', '.join(CELL_KINDS)})"
        )
    return CELL_KINDS[kind]
