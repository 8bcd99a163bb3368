"""The driver: plan a matrix (expand, check, skip finished cells), run it, store each result.

The driver is the only process that writes the database. Execution is in this process
for now; the executor is a parameter so a distributed one can take its place.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from suite.cells import Cell, expand
from suite.checks import check_cells
from suite.registry import Catalog
from suite.results import CellResult
from suite.store.store import RunLock, Store


@dataclass
class Plan:
    matrix: str
    cells: list[Cell]
    todo: list[Cell]
    # Later phases, run after `todo` in the same run: each builds its cells from what the
    # earlier ones stored (tuned finals are selected from the trials' validation scores).
    phases: list[Callable[[Store], list[Cell]]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.cells) - len(self.todo)


@dataclass
class RunSummary:
    run_id: str
    results: list[CellResult] = field(default_factory=list)

    @property
    def all_ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def plan(catalog: Catalog, matrix_ref: str, store: Store, rerun: bool = False) -> Plan:
    """Expand and check a matrix; raises SpecError before anything is written."""
    entry = catalog.matrix_from_path_or_name(matrix_ref)
    cells = expand(entry.spec, catalog, entry)
    check_cells(catalog, cells)
    if entry.spec.tuning is not None:
        from suite.tuning import finals_phase, trial_cells

        trials = trial_cells(catalog, entry.spec, cells)
        check_cells(catalog, trials)
        done = set() if rerun else store.ok_cell_ids(c.cell_id for c in trials)
        todo = [c for c in trials if c.cell_id not in done]
        return Plan(entry.spec.name, trials, todo, [finals_phase(cells, trials, rerun)])
    done = set() if rerun else store.ok_cell_ids(c.cell_id for c in cells)
    return Plan(entry.spec.name, cells, [c for c in cells if c.cell_id not in done])


# An executor runs cells and calls back with each result as it arrives.
Executor = Callable[[list[Cell], Callable[[Cell, CellResult], None]], None]


def in_process_executor(progress=None) -> Executor:
    from suite.train.runner import run_cell

    def execute(cells: list[Cell], on_result: Callable[[Cell, CellResult], None]) -> None:
        for cell in cells:
            if progress:
                progress.start_cell(cell)
            on_step = progress.step if progress else None
            on_result(cell, run_cell(cell, on_step=on_step))

    return execute


def run_plan(the_plan: Plan, store: Store, executor: Executor, progress=None) -> RunSummary:
    """Run the plan's cells, writing each result as it arrives (one transaction each)."""
    from suite.provenance import provenance

    summary = RunSummary(run_id=uuid.uuid4().hex[:12])
    prov = provenance(summary.run_id)
    with RunLock(store.path):
        store.init()

        def on_result(cell: Cell, result: CellResult) -> None:
            store.write(cell, result, prov)
            summary.results.append(result)
            if progress:
                progress.finish_cell(cell, result)

        executor(the_plan.todo, on_result)
        for phase in the_plan.phases:
            executor(phase(store), on_result)
    return summary


def default_db() -> Path:
    from suite.store.store import DEFAULT_DB

    return DEFAULT_DB
