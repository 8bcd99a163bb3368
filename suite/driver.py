"""The driver: plan a matrix (expand, check, skip finished cells), run it, store each result.

The driver is the only process that writes the database: each result in its own short
transaction as it arrives, so a killed driver loses only the cells in flight and the next
run of the matrix picks up the rest. Executors (suite/scheduler/: Ray actors, or this
process) run the cells and call back with each result.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from suite.cell_kinds import cell_kind
from suite.cells import Cell, PhaseCells, Workload, expand_matrix
from suite.checks import check_cells
from suite.errors import SpecError
from suite.paths import cell_log
from suite.registry import Catalog
from suite.results import CellReport, CellResult
from suite.slices import Slice
from suite.store.store import RunLock, Store


@dataclass
class Plan:
    matrix: str
    cells: list[Cell]
    todo: list[Cell]
    # Later phases, run after `todo` in the same run: each builds its cells from what the
    # earlier ones stored (tuned finals are selected from the trials' validation scores).
    phases: list[Callable[[Store], PhaseCells]] = field(default_factory=list)
    # "model x task" pairs the matrix names but the model cannot run (left out).
    skipped_pairs: list[str] = field(default_factory=list)
    # The cells whose rows the matrix reports: its cells, or (tuned) the finals the last
    # phase built, done ones included. Filled by run_plan as phases run.
    phase_cells: list[Cell] = field(default_factory=list)
    # The post-hoc stages (suite/posthoc/plan.py), run after every training phase, and
    # their cells once built (filled by run_plan).
    posthoc: Callable[[Store], Any] | None = None
    posthoc_cells: list[Any] = field(default_factory=list)
    # Its cells are continual cells (suite/continual/), stored in a table of their own.
    continual: bool = False
    # Its cells are federated rounds (suite/federated/), run wave by wave as phases.
    federated: bool = False
    # Cells already stored, where that is not every cell outside `todo` (federated: the
    # rounds stored; the rounds after the first wave's come in later phases).
    stored: int | None = None

    @property
    def skipped(self) -> int:
        return self.stored if self.stored is not None else len(self.cells) - len(self.todo)

    @property
    def to_run(self) -> int:
        return len(self.cells) - self.stored if self.stored is not None else len(self.todo)

    @property
    def reported_cells(self) -> list[Cell]:
        return self.phase_cells if self.phases else self.cells

    @property
    def loading_cells(self) -> list[Cell]:
        """The cells whose models and data this run may load: those to run, or every cell
        when later phases or post-hoc stages build more from them."""
        cells = self.cells if (self.phases or self.posthoc is not None) else self.todo
        # A continual cell loads the trained cell of each task of its sequence, a
        # federated round its run's trained cell.
        return [s for c in cells for s in c.stages()] if self.continual or self.federated else cells


@dataclass
class RunSummary:
    run_id: str
    results: list[CellResult] = field(default_factory=list)
    # Each result's cell title, in the same order (for the phase breakdown).
    titles: list[str] = field(default_factory=list)

    @property
    def all_ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def plan(
    catalog: Catalog,
    matrix_ref: str,
    store: Store,
    rerun: bool = False,
    only: Slice | None = None,
) -> Plan:
    """Expand and check a matrix (or the slice `only` of it); raises SpecError before
    anything is written."""
    entry = catalog.matrix_from_path_or_name(matrix_ref)
    expansion = expand_matrix(entry.spec, catalog, entry)
    cells, skipped_pairs = expansion.cells, expansion.skipped_pairs
    if only is not None and not only.empty:
        cells = only.select(cells, str(entry.path))
    check_cells(catalog, cells)
    if entry.spec.continual is not None:
        from suite.continual.plan import plan_continual

        cells, todo = plan_continual(entry, cells, store, rerun)
        return Plan(entry.spec.name, cells, todo, skipped_pairs=skipped_pairs, continual=True)
    if entry.spec.federated is not None:
        from suite.federated.plan import plan_federated

        first, waves, stored = plan_federated(entry, cells, store, rerun)
        return Plan(entry.spec.name, first.cells, first.todo, waves, skipped_pairs,
                    federated=True, stored=stored)  # fmt: skip
    _check_protocol_budget(entry, store)
    cells, posthoc = _with_posthoc(catalog, entry, cells, store, rerun)
    if entry.spec.tuning is not None:
        from suite.tuning import finals_phase, trial_cells

        trials = trial_cells(catalog, entry.spec, cells)
        check_cells(catalog, trials)
        done = set() if rerun else store.ok_cell_ids(c.cell_id for c in trials)
        todo = [c for c in trials if c.cell_id not in done]
        finals = [finals_phase(cells, trials, rerun)]
        if posthoc is not None:
            posthoc = posthoc(lambda s: _finals(cells, trials, s))
        return Plan(entry.spec.name, trials, todo, finals, skipped_pairs, posthoc=posthoc)
    done = set() if rerun else store.ok_cell_ids(c.cell_id for c in cells)
    todo = [c for c in cells if c.cell_id not in done]
    if posthoc is not None:
        posthoc = posthoc(lambda _store: cells)
    return Plan(entry.spec.name, cells, todo, skipped_pairs=skipped_pairs, posthoc=posthoc)


def _check_protocol_budget(entry, store: Store) -> None:
    """A declared protocol fixes its budget: a matrix that declares one the store already
    holds with another budget is refused before anything runs (its rows would sit in one
    leaderboard beside rows of another budget). The tuning rule is not checked: a slice
    of a protocol may run its selected configurations without tuning again."""
    from suite.specs.budget import budget_tag
    from suite.store.protocols import budget_words

    spec = entry.spec
    if spec.protocol is None:
        return  # the default name carries the budget's tag
    mine = spec.budget.model_dump(mode="json")
    for budget in store.protocol_budgets(spec.protocol):
        stored = json.loads(budget or "{}")
        if budget_tag(stored) != budget_tag(mine):
            raise SpecError.single(
                str(entry.path), entry.line("protocol"), "protocol",
                f"protocol '{spec.protocol}' is stored in {store.path} with the budget "
                f"'{budget_words(stored)}'; this matrix gives it '{budget_words(mine)}'. "
                "A protocol fixes its budget: declare a new version of it "
                "(league-v1 -> league-v2) or use its budget",
            )  # fmt: skip


def _with_posthoc(catalog: Catalog, entry, cells: list[Cell], store: Store, rerun: bool):
    """The cells, those that must save an artifact marked, and (when the matrix has
    post-hoc stages, checked here) a maker of the post-hoc phase given the trained cells."""
    spec = entry.spec
    if not spec.posthoc and not spec.save_artifacts:
        return cells, None
    from suite.artifacts import artifacts_dir
    from suite.posthoc.plan import check_posthoc, mark_saving, posthoc_phase

    cells = mark_saving(spec, cells, artifacts_dir(store.path).resolve())
    if not spec.posthoc:
        return cells, None
    check_posthoc(catalog, entry)
    return cells, lambda trained: posthoc_phase(catalog, entry, trained, rerun)


def _finals(cells: list[Cell], trials: list[Cell], store: Store) -> list[Cell]:
    from suite.tuning import final_cells, validation_scores

    return final_cells(cells, trials, validation_scores(store, [t.cell_id for t in trials]))


class Executor(Protocol):
    """Runs cells and calls back with each cell's report as it arrives."""

    # The run's log folder (run_plan sets it): workers write each cell's log there as the
    # cell runs (suite/paths.py: cell_log).
    log_dir: Path | None

    def prepare(self, cells: list[Workload]) -> None:
        """Connect and check resources; called before anything is written."""

    def __call__(
        self, cells: list[Workload], on_result: Callable[[Workload, CellReport], None]
    ) -> None:
        """Run `cells`, calling `on_result` once per cell."""

    def close(self) -> None:
        """Release workers (called even when the run fails)."""


def in_process_executor(progress=None, results_dir: Path | None = None) -> Executor:
    """Run cells in this process (`--executor local`), through the Ray workers' code path."""
    from suite.scheduler.local import LocalExecutor

    return LocalExecutor(progress, results_dir)


def make_executor(
    kind: str, progress=None, results_dir: Path = Path("results"), **options
) -> Executor:
    """The executor `peftbench run --executor KIND` asks for (ray by default)."""
    if kind == "local":
        return in_process_executor(progress, results_dir)
    from suite.scheduler.cluster import resolve_address
    from suite.scheduler.resources import SchedulingError

    if kind != "ray":  # the CLI's typed option never gets here; other callers may
        raise SchedulingError(f"unknown executor {kind!r}; use 'ray' or 'local'")

    options["address"] = resolve_address(options.get("address"))
    return ray_executor(progress, results_dir, **options)


def ray_executor(progress=None, results_dir: Path = Path("results"), **options) -> Executor:
    """Run cells on Ray actors: an embedded Ray, or the cluster at options['address']."""
    from suite.scheduler.ray_executor import RayExecutor

    return RayExecutor(progress=progress, results_dir=results_dir, **options)


def run_plan(the_plan: Plan, store: Store, executor: Executor, progress=None) -> RunSummary:
    """Run the plan's cells, writing each result as it arrives (one transaction each)."""
    from suite.provenance import provenance

    summary = RunSummary(run_id=uuid.uuid4().hex[:12])
    prov = provenance(summary.run_id)
    logs = store.path.parent.resolve() / "logs" / summary.run_id
    with RunLock(store.path):
        try:
            logs.mkdir(parents=True, exist_ok=True)
            executor.log_dir = logs
            executor.prepare(the_plan.todo)
            store.init()
            store.join_protocols(the_plan.cells)  # stored cells count for this protocol too

            def on_result(cell, report: CellReport) -> None:
                # The driver's id is the one resume looks up.
                log = write_cell_log(logs, cell, report)
                result = cell_kind(cell).record(store, cell, report, prov, str(log))
                summary.results.append(result)
                summary.titles.append(cell.title())
                if progress:
                    progress.finish_cell(cell, result)

            executor(the_plan.todo, on_result)
            for phase in the_plan.phases:
                built = phase(store)
                store.join_protocols(built.cells)
                the_plan.phase_cells = built.cells
                _add_to_progress(progress, len(built.todo))
                executor(built.todo, on_result)
            if the_plan.posthoc is not None:
                _run_posthoc(the_plan, store, executor, on_result, progress)
        finally:
            executor.close()
    return summary


def _add_to_progress(progress, n: int, note: str | None = None) -> None:
    if progress is not None and hasattr(progress, "add_cells"):
        progress.add_cells(n)
    if note and progress is not None and hasattr(progress, "note"):
        progress.note(note)


def _run_posthoc(the_plan: Plan, store: Store, executor, on_result, progress) -> None:
    """The post-hoc phase: refused cells get their row at once, the rest run."""
    from suite.posthoc.plan import refused_report

    built = the_plan.posthoc(store)
    the_plan.posthoc_cells = built.cells
    note = (
        f"post-hoc: {len(built.cells)} cells, {built.done} already stored ok, "
        f"{len(built.todo)} to run, {len(built.refused)} refused (inputs not ready)"
    )
    _add_to_progress(progress, len(built.todo) + len(built.refused), note)
    for cell, status, reason in built.refused:
        if progress:
            progress.start_cell(cell)
        on_result(cell, refused_report(status, reason))
    executor(built.todo, on_result)


def matrix_cell_ids(catalog: Catalog, matrix_ref: str, store: Store) -> list[str]:
    """The ids of the cells a matrix reports (`peftbench table --matrix`): its expanded
    cells, or for a tuned matrix the finals its stored trials select."""
    entry = catalog.matrix_from_path_or_name(matrix_ref)
    cells = expand_matrix(entry.spec, catalog, entry).cells
    if entry.spec.tuning is None:
        return [c.cell_id for c in cells]
    from suite.tuning import final_cells, trial_cells, validation_scores

    trials = trial_cells(catalog, entry.spec, cells)
    finals = final_cells(cells, trials, validation_scores(store, [t.cell_id for t in trials]))
    return [c.cell_id for c in finals]


def write_cell_log(folder: Path, cell: Workload, report: CellReport) -> Path:
    """The cell's log (steps, losses, errors, as its worker recorded them) under results/."""
    folder.mkdir(parents=True, exist_ok=True)
    path = cell_log(folder, cell.cell_id)
    if report.live_log == str(path) and path.is_file():
        return path  # the worker wrote it as the cell ran
    measured = report.measured
    text = report.log or f"{cell.title()}\nstatus {measured.status}\n{measured.error or ''}\n"
    with open(path, "a") as f:  # a retried cell appends to its earlier attempts
        f.write(text)
    return path
