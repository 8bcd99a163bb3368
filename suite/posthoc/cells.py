"""Post-hoc cells: one merge of trained cells, or one compression of a trained cell.

Expansion is pure, like the matrix's (suite/cells.py): from the matrix's `posthoc:`
stages and its trained cells. A merge stage makes one cell per (model, seed, method
entry) with one input per task; a compress stage one cell per input cell and entry.
A cell's id hashes its own spec (method, hyperparameters, version, calibration, budget,
profile, seed) and its inputs' cell ids, never their content: a retrained input is a
new input id, hence a new post-hoc cell.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import Any, ClassVar

from pydantic import Field

from suite.cells import Cell, canonical_json, semantic
from suite.errors import SpecError, SpecIssue, unknown_name_message
from suite.registry import Catalog, Entry
from suite.specs.base import Frozen
from suite.specs.budget import Budget
from suite.specs.matrix import MatrixSpec
from suite.specs.model import ModelPreset
from suite.specs.posthoc import (
    STAGE_KINDS,
    CalibrationSpec,
    PosthocEntry,
    PosthocStageSpec,
    Stage,
)
from suite.specs.profile import HardwareProfile


class ResolvedPosthoc(Frozen):
    """A post-hoc method with its implementation found and hyperparameters merged."""

    label: str
    name: str
    stage: Stage
    implementation: str
    params: dict[str, Any]
    # None while the implementation is at version 1, so ids stay put until a bump.
    version: int | None = None
    fidelity: str | None = Field(default=None, exclude=True)
    family: str = Field(default="other", exclude=True)
    requires: str = Field(default="any", exclude=True)
    trains: bool = Field(default=False, exclude=True)
    impl_dir: str = Field(default="", exclude=True)

    @property
    def method_version(self) -> int:
        return self.version or 1


class InputArtifact(Frozen):
    """Where an input's artifact is and what the store recorded of it (filled by the
    driver from the store before the cell runs)."""

    path: str
    bytes: int
    sha256: str


class PosthocCell(Frozen):
    """One post-hoc unit of work (a `Workload` of kind "posthoc", suite/cell_kinds.py)."""

    kind: ClassVar[str] = "posthoc"  # not a field: never dumped, never hashed
    matrix: str = Field(exclude=True)
    stage_name: str = Field(exclude=True)
    method: ResolvedPosthoc
    input_ids: list[str]
    inputs: list[Cell] = Field(exclude=True)
    seed: int
    profile: HardwareProfile
    calibration: CalibrationSpec | None = None
    budget: Budget | None = None
    timeout_s: float | None = Field(default=None, exclude=True)
    artifacts: list[InputArtifact] | None = Field(default=None, exclude=True)

    @property
    def cell_id(self) -> str:
        data = semantic(self.model_dump(mode="json"))
        return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16]

    @property
    def model(self) -> ModelPreset:
        """The base every input was trained on (a stage's inputs share one)."""
        return self.inputs[0].model

    @property
    def tasks(self) -> list[str]:
        return [c.task.name for c in self.inputs]

    def title(self) -> str:
        sources = "+".join(f"{c.method.label}@{c.task.name}" for c in self.inputs)
        return f"{self.method.stage} {self.method.label} of {sources} x {self.model.name} (seed {self.seed})"


def resolve_posthoc(
    catalog: Catalog, entry: PosthocEntry, stage: PosthocStageSpec, file: str, line
) -> ResolvedPosthoc:
    found = catalog.posthoc.get(entry.method, file=file, line=line, field="posthoc.methods")
    spec = found.spec
    if spec.stage != stage.stage:
        raise SpecError.single(
            file, line, "posthoc.methods",
            f"'{entry.method}' is a {spec.stage} method; stage '{stage.name}' is a {stage.stage} stage",
        )  # fmt: skip
    return ResolvedPosthoc(
        label=entry.display,
        name=spec.name,
        stage=spec.stage,
        implementation=spec.implementation,
        params={**spec.params, **entry.params},
        version=spec.version if spec.version > 1 else None,
        fidelity=spec.fidelity,
        family=spec.family,
        requires=spec.requires,
        trains=spec.trains,
        impl_dir=str(found.folder),
    )


def _line(matrix_entry: Entry[MatrixSpec] | None, *loc):
    return matrix_entry.line(*loc) if matrix_entry else None


def check_stage_inputs(
    matrix: MatrixSpec, stage: PosthocStageSpec, i: int, file: str, entry=None
) -> None:
    """A stage's inputs name one of the matrix's method entries and some of its tasks."""
    labels = [e.display for e in matrix.entries()]
    at = _line(entry, "posthoc", i, "inputs", "method")
    if stage.inputs.method not in labels:
        message = unknown_name_message("method entry", stage.inputs.method, dict.fromkeys(labels))
        raise SpecError.single(file, at, f"posthoc.{i}.inputs.method", message)
    unknown = sorted(set(stage.inputs.tasks or []) - set(matrix.tasks))
    if unknown:
        raise SpecError.single(
            file, at, f"posthoc.{i}.inputs.tasks", f"tasks not in the matrix: {unknown}"
        )


def stage_cells(
    matrix: MatrixSpec, stage: PosthocStageSpec, i: int, catalog: Catalog, trained: list[Cell],
    entry: Entry[MatrixSpec] | None = None,
) -> list[PosthocCell]:  # fmt: skip
    """The cells of one stage, from the matrix's trained cells (finals, if tuned)."""
    file = str(entry.path) if entry else matrix.name
    check_stage_inputs(matrix, stage, i, file, entry)
    tasks = stage.inputs.tasks or matrix.tasks
    chosen = [c for c in trained if c.method.label == stage.inputs.method and c.task.name in tasks]
    chosen.sort(key=lambda c: (c.model.name, c.seed, tasks.index(c.task.name)))
    kind = STAGE_KINDS[stage.stage]
    key = attrgetter(*kind.group_by)
    groups: dict[tuple, list[Cell]] = {}
    for cell in chosen:
        groups.setdefault(key(cell), []).append(cell)
    groups = {k: g for k, g in groups.items() if len(g) >= kind.min_inputs}
    methods = [
        resolve_posthoc(catalog, e, stage, file, _line(entry, "posthoc", i, "methods", j))
        for j, e in enumerate(stage.entries())
    ]
    out = []
    for inputs in groups.values():
        for method in methods:
            out.append(
                PosthocCell(
                    matrix=matrix.name,
                    stage_name=stage.name,
                    method=method,
                    input_ids=[c.cell_id for c in inputs],
                    inputs=inputs,
                    seed=inputs[0].seed,
                    profile=inputs[0].profile,
                    calibration=stage.calibration if kind.calibrated else None,
                    budget=(stage.budget or matrix.budget) if method.trains else None,
                    timeout_s=stage.timeout_s,
                )
            )
    return out


def posthoc_cells(
    matrix: MatrixSpec, catalog: Catalog, trained: list[Cell], entry=None
) -> list[PosthocCell]:
    """Every stage's cells, deduplicated by id, in stage order."""
    cells: dict[str, PosthocCell] = {}
    issues: list[SpecIssue] = []
    for i, stage in enumerate(matrix.posthoc or []):
        try:
            for cell in stage_cells(matrix, stage, i, catalog, trained, entry):
                cells.setdefault(cell.cell_id, cell)
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    return list(cells.values())


def consumed_labels(matrix: MatrixSpec) -> dict[str, set[str]]:
    """Method label -> the tasks whose trained cells some stage consumes (they must save)."""
    out: dict[str, set[str]] = {}
    for stage in matrix.posthoc or []:
        out.setdefault(stage.inputs.method, set()).update(stage.inputs.tasks or matrix.tasks)
    return out
