"""A continual matrix's plan (its cells, those not stored ok yet) and what the run
summary keeps of each result."""

from __future__ import annotations

from dataclasses import dataclass

from suite.cells import Cell
from suite.continual.cells import ContinualCell, continual_cells
from suite.results import CellReport, ContinualMeasured


@dataclass(frozen=True)
class ContinualOutcome:
    """What the run summary and the progress display keep of a continual result."""

    status: str
    error: str | None
    hostname: str | None
    summary: str


def outcome(cell: ContinualCell, report: CellReport) -> ContinualOutcome:
    measured = report.measured
    text = (measured.error or "")[-200:]
    if measured.status == "ok" and isinstance(measured, ContinualMeasured):
        m = measured.measurements
        text = f"ACC {m.avg_accuracy:.4f}  BWT {m.bwt:+.4f}  FWT {m.fwt:+.4f}"
    return ContinualOutcome(measured.status, measured.error, report.placement.hostname, text)


def plan_continual(entry, trained: list[Cell], store, rerun: bool):
    """The continual cells of the matrix `entry` and those of them to run."""
    cells = continual_cells(entry.spec, trained, str(entry.path))
    done = set() if rerun else store.continual_ok_ids(c.cell_id for c in cells)
    return cells, [c for c in cells if c.cell_id not in done]
