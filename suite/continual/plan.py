"""A continual matrix's plan (its cells, those not stored ok yet) and what the run
summary keeps of each result."""

from __future__ import annotations

from suite.cells import Cell
from suite.continual.cells import ContinualCell, continual_cells
from suite.continual.strategies import STRATEGIES
from suite.errors import SpecError
from suite.results import CellReport, StageOutcome
from suite.specs.matrix import MatrixSpec
from suite.track_results import ContinualMeasured


def _summary(measured: ContinualMeasured) -> str:
    m = measured.measurements
    return f"ACC {m.avg_accuracy:.4f}  BWT {m.bwt:+.4f}  FWT {m.fwt:+.4f}"


def outcome(cell: ContinualCell, report: CellReport) -> StageOutcome:
    return StageOutcome.of(report, ContinualMeasured, _summary)


def checked_cells(matrix: MatrixSpec, trained: list[Cell], file: str) -> list[ContinualCell]:
    """`continual_cells`, once the matrix's strategies are known to exist (checked here,
    above the strategies' code, so that cells.py needs nothing from it)."""
    unknown = [s for s in matrix.continual.strategies if s not in STRATEGIES]
    if unknown:
        raise SpecError.single(
            file, None, "continual.strategies",
            f"unknown strategies {unknown}; known: {', '.join(STRATEGIES)}",
        )  # fmt: skip
    return continual_cells(matrix, trained, file)


def plan_continual(entry, trained: list[Cell], store, rerun: bool):
    """The continual cells of the matrix `entry` and those of them to run."""
    cells = checked_cells(entry.spec, trained, str(entry.path))
    done = set() if rerun else store.continual_ok_ids(c.cell_id for c in cells)
    return cells, [c for c in cells if c.cell_id not in done]
