"""The driver's side of post-hoc stages: which trained cells save, checks before anything
runs, and the post-hoc phase (built from what the store holds once training is done).

A post-hoc cell runs only when every input cell is stored ok with a recorded artifact;
otherwise it gets a row saying why (`input_missing`), and its inputs are never retrained
for it. Cells already stored ok are skipped, as for trained cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from suite.cells import Cell
from suite.errors import SpecError, SpecIssue
from suite.plugins import load_object
from suite.posthoc.cells import (
    InputArtifact,
    PosthocCell,
    check_stage_inputs,
    consumed_labels,
    posthoc_cells,
    resolve_posthoc,
)
from suite.registry import Catalog, Entry
from suite.results import CellReport, StageOutcome
from suite.specs.matrix import MatrixSpec
from suite.track_results import PosthocMeasured


def mark_saving(matrix: MatrixSpec, cells: list[Cell], folder: Path) -> list[Cell]:
    """The cells with `artifact_dir` set where they must save: every cell when the matrix
    saves artifacts, else those a post-hoc stage consumes."""
    wanted = consumed_labels(matrix)
    out = []
    for cell in cells:
        saves = matrix.save_artifacts or cell.task.name in wanted.get(cell.method.label, set())
        out.append(cell.model_copy(update={"artifact_dir": str(folder)}) if saves else cell)
    return out


def check_posthoc(catalog: Catalog, entry: Entry[MatrixSpec]) -> None:
    """Every stage's inputs, methods and hyperparameters, before anything is written."""
    matrix, file = entry.spec, str(entry.path)
    issues: list[SpecIssue] = []
    for i, stage in enumerate(matrix.posthoc or []):
        try:
            check_stage_inputs(matrix, stage, i, file, entry)
        except SpecError as exc:
            issues.extend(exc.issues)
        for j, item in enumerate(stage.entries()):
            line = entry.line("posthoc", i, "methods", j)
            try:
                method = resolve_posthoc(catalog, item, stage, file, line)
                cls = load_object(method.implementation, method.impl_dir)
                cls.Params.model_validate(method.params)
            except SpecError as exc:
                issues.extend(exc.issues)
            except ValidationError as exc:
                for err in exc.errors():
                    key = ".".join(str(p) for p in err["loc"])
                    message = err["msg"].removeprefix("Value error, ")
                    issues.append(
                        SpecIssue(file, line, f"posthoc.{i}.methods.{j}.params.{key}",
                                  f"{message} (post-hoc method '{item.method}')")
                    )  # fmt: skip
            except ImportError as exc:
                issues.append(SpecIssue(file, line, f"posthoc.{i}.methods.{j}", str(exc)))
    if issues:
        raise SpecError(issues)


@dataclass(frozen=True)
class PosthocPhase:
    """The post-hoc cells, those to run (inputs ready), and those refused with why."""

    cells: list[PosthocCell]
    todo: list[PosthocCell]
    refused: list[tuple[PosthocCell, str, str]] = field(default_factory=list)
    done: int = 0


def posthoc_phase(
    catalog: Catalog, entry: Entry[MatrixSpec], trained: Callable[[object], list[Cell]], rerun: bool
) -> Callable[[object], PosthocPhase]:
    """The phase the driver runs after training: `trained(store)` gives the matrix's
    trained cells (its cells, or the finals its stored trials select)."""

    def phase(store) -> PosthocPhase:
        cells = posthoc_cells(entry.spec, catalog, trained(store), entry)
        done = set() if rerun else store.posthoc_ok_ids(c.cell_id for c in cells)
        pending = [c for c in cells if c.cell_id not in done]
        inputs = {i for c in pending for i in c.input_ids}
        ok = store.ok_cell_ids(inputs)
        artifacts = store.artifact_rows(inputs)
        status = store.latest_status(inputs - ok)
        todo, refused = [], []
        for cell in pending:
            reason = _missing(cell, ok, artifacts, status, entry.spec.name)
            if reason:
                refused.append((cell, "input_missing", reason))
                continue
            found = [InputArtifact(path=p, bytes=b, sha256=h)
                     for p, b, h in (artifacts[i] for i in cell.input_ids)]  # fmt: skip
            todo.append(cell.model_copy(update={"artifacts": found}))
        return PosthocPhase(cells, todo, refused, len(cells) - len(pending))

    return phase


def _missing(cell: PosthocCell, ok: set, artifacts: dict, status: dict, matrix: str) -> str | None:
    """Why the cell cannot run yet (None: it can)."""
    reasons = []
    for source in cell.inputs:
        cid = source.cell_id
        if cid not in ok:
            last = status.get(cid)
            state = f"its latest run is {last[0]}" if last else "it has no stored run"
            reasons.append(f"input {cid} ({source.title()}) is not stored ok: {state}")
        elif cid not in artifacts:
            reasons.append(
                f"input {cid} ({source.title()}) is stored ok but saved no artifact (it ran "
                "before saving was on, or `peftbench artifacts gc` removed it)"
            )
        elif not Path(artifacts[cid][0]).is_file():
            reasons.append(f"input {cid} ({source.title()}): artifact {artifacts[cid][0]} is gone")
    if not reasons:
        return None
    return (
        "; ".join(reasons)
        + f". Post-hoc stages never retrain their inputs: `peftbench run {matrix} --rerun` "
        "trains them again."
    )


def refused_report(status: str, reason: str) -> CellReport:
    return CellReport(measured=PosthocMeasured(status=status, error=reason), log=reason + "\n")


def outcome(cell: PosthocCell, report: CellReport) -> StageOutcome:
    def summary(measured: PosthocMeasured) -> str:
        parts = [
            f"{s.task} {s.value:.4f} ({s.normalised:.3f} of {s.source_value:.4f})"
            for s in measured.measurements.scores
            if s.primary and s.split == "test" and s.normalised is not None
        ]
        return f"test {cell.inputs[0].task.primary_metric}: " + ", ".join(parts)

    return StageOutcome.of(report, PosthocMeasured, summary)
