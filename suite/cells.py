"""Matrix expansion: a pure function from a matrix and the catalogue to a list of cells.

A cell is one (model, method with resolved hyperparameters, task, seed) under one budget
and hardware profile. Its `cell_id` is a hash of everything that can change the result,
so identical cells dedupe across matrices and a changed spec makes a new cell.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from pydantic import Field

from suite.errors import SpecError, SpecIssue
from suite.hashing import canonical_json, semantic, spec_hash
from suite.registry import Catalog, Entry
from suite.resolve import ResolvedMethod, apply_ties, implementation_chain, resolve_method
from suite.specs.base import Frozen
from suite.specs.budget import default_protocol
from suite.specs.matrix import Budget, MatrixSpec, MethodEntry, ReferenceSpec, TuningSpec
from suite.specs.model import ModelPreset
from suite.specs.profile import HardwareProfile
from suite.tasks.types import TaskSpec, task_type, types_run_by

# Hashing (suite/hashing.py) and method resolution (suite/resolve.py) were defined here
# once; tests and plugins still import them from this module.
__all__ = [
    "Cell", "Expansion", "PhaseCells", "ResolvedMethod", "Workload", "apply_ties",
    "canonical_json", "expand", "expand_matrix", "implementation_chain", "resolve_method",
    "runs_on", "semantic", "spec_hash",
]  # fmt: skip


class Workload(Protocol):
    """What the executors, the worker and the driver need of any cell, trained or
    post-hoc; its `kind` picks how it runs and how its result is stored, in one registry
    (suite/cell_kinds.py)."""

    kind: ClassVar[str]
    seed: int
    profile: HardwareProfile
    budget: Budget | None
    timeout_s: float | None

    @property
    def cell_id(self) -> str: ...

    @property
    def model(self) -> ModelPreset: ...

    def title(self) -> str: ...


class Cell(Frozen):
    """One unit of work: a method trained on a task (a `Workload` of kind "trained")."""

    kind: ClassVar[str] = "trained"  # not a field: never dumped, never hashed
    matrix: str = Field(exclude=True)
    model: ModelPreset
    method: ResolvedMethod
    task: TaskSpec
    task_dir: str = Field(exclude=True)
    seed: int
    budget: Budget
    profile: HardwareProfile
    timeout_s: float | None = Field(default=None, exclude=True)
    # 'trial' cells tune (validation only); 'final' cells run the selected configuration.
    phase: Literal["single", "trial", "final"] = "single"
    reference: ReferenceSpec | None = None
    # How the frozen base is stored (suite/models/storage.py); None: the preset's dtype,
    # as before (unset, it stays out of the hash, so older ids do not move).
    base_storage: str | None = None
    # The protocol the matrix declares (None: the default, `<matrix>@<budget tag>`, which
    # stays out of the hash). A declared one is hashed, so a league cell and an identical
    # cell of an ad-hoc matrix are two rows, each in its own protocol, while every matrix
    # that declares `league-v1` (a slice of the league) shares the league's cells.
    protocol: str | None = None
    # Stored with the row, not hashed: they describe how the cell was chosen.
    baseline_method: str = Field(default="lora", exclude=True)
    tuning: TuningSpec | None = Field(default=None, exclude=True)
    trial_index: int | None = Field(default=None, exclude=True)
    selection: dict[str, Any] | None = Field(default=None, exclude=True)
    # Where the worker saves the cell's artifact (None: it saves none). Set by the plan
    # for matrices that save, and for every cell a post-hoc stage consumes; not hashed.
    artifact_dir: str | None = Field(default=None, exclude=True)

    @property
    def cell_id(self) -> str:
        # Not cached: model_copy(update=...) would carry a cached id over to a changed cell.
        data = self.model_dump(mode="json")
        # A final cell is the same computation as an untuned cell of that configuration;
        # only trials hash apart. Unset options stay out so older ids do not change.
        if data["phase"] != "trial":
            del data["phase"]
        return hashlib.sha256(canonical_json(semantic(data)).encode()).hexdigest()[:16]

    @property
    def protocol_name(self) -> str:
        """The protocol stored with the row (`MatrixSpec.protocol_name`)."""
        return self.protocol or default_protocol(self.matrix, self.budget.model_dump(mode="json"))

    def title(self) -> str:
        return f"{self.method.label} x {self.task.name} x {self.model.name} (seed {self.seed})"


def runs_on(model: ModelPreset, task: TaskSpec) -> bool:
    """Whether the model's architecture has a head and an encoding for the task's type."""
    return model.architecture in task_type(task).architectures


@dataclass(frozen=True)
class PhaseCells:
    """A later phase's cells (tuned finals), and those of them not stored ok yet."""

    cells: list[Cell]
    todo: list[Cell]


@dataclass(frozen=True)
class Expansion:
    cells: list[Cell]
    # "model x task" pairs left out because the model cannot run the task's type (a
    # matrix may mix encoders and causal LMs over classification and generation tasks).
    skipped_pairs: list[str]


def expand(
    matrix: MatrixSpec, catalog: Catalog, matrix_entry: Entry[MatrixSpec] | None = None
) -> list[Cell]:
    """models x methods x tasks x seeds, deduplicated by cell_id, in a stable order."""
    return expand_matrix(matrix, catalog, matrix_entry).cells


def _named(catalog: Catalog, matrix: MatrixSpec, file: str, line: Callable) -> tuple:
    """The matrix's profile, models, tasks and methods; one SpecError naming every
    unknown name of every list, not only the first."""
    issues: list[SpecIssue] = []

    def each(lookup: Callable[[int, Any], Any], names) -> list[Any]:
        values = []
        for i, name in enumerate(names):
            try:
                values.append(lookup(i, name))
            except SpecError as exc:
                issues.extend(exc.issues)
        return values

    def method(i: int, entry: MethodEntry) -> ResolvedMethod:
        params_line = lambda k: line("methods", i, "params", k)  # noqa: E731
        return resolve_method(catalog, entry, file, line("methods", i), params_line)

    profiles = each(
        lambda _i, p: (
            catalog.profiles.get(p, file=file, line=line("profile"), field="profile").spec
        ),
        [matrix.profile],
    )
    models = each(
        lambda i, m: (
            catalog.models.get(m, file=file, line=line("models", i), field=f"models.{i}").spec
        ),
        matrix.models,
    )
    tasks = each(
        lambda i, t: catalog.tasks.get(t, file=file, line=line("tasks", i), field=f"tasks.{i}"),
        matrix.tasks,
    )
    methods = each(method, matrix.entries())  # fmt: skip
    if issues:
        raise SpecError(issues)
    return profiles[0], models, tasks, methods


def expand_matrix(
    matrix: MatrixSpec, catalog: Catalog, matrix_entry: Entry[MatrixSpec] | None = None
) -> Expansion:
    """The cells, and the model x task pairs left out as unrunnable."""
    file = str(matrix_entry.path) if matrix_entry else matrix.name

    def line(*loc):
        return matrix_entry.line(*loc) if matrix_entry else None

    profile, models, tasks, methods = _named(catalog, matrix, file, line)
    _check_every_model_and_task_runs(models, [t.spec for t in tasks], file, line)
    cells: dict[str, Cell] = {}
    restricted = [set(e.tasks) if e.tasks else None for e in matrix.entries()]
    for model in models:
        for storage, method, only in _with_storages(methods, restricted, matrix.base_storage):
            for task in tasks:
                if not runs_on(model, task.spec) or (only and task.spec.name not in only):
                    continue
                for seed in matrix.seeds:
                    cell = Cell(
                        matrix=matrix.name,
                        model=model,
                        method=method,
                        base_storage=storage,
                        task=task.spec,
                        task_dir=str(task.folder),
                        seed=seed,
                        budget=matrix.budget,
                        profile=profile,
                        timeout_s=matrix.timeout_s,
                        reference=matrix.reference if model.architecture == "causal-lm" else None,
                        baseline_method=matrix.baseline_method,
                        protocol=matrix.protocol,
                    )
                    cells.setdefault(cell.cell_id, cell)
    skipped = [f"{m.name} x {t.spec.name}" for m in models for t in tasks if not runs_on(m, t.spec)]
    return Expansion(list(cells.values()), skipped)


def _with_storages(
    methods: list[ResolvedMethod], restricted: list[set[str] | None], storages: list[str] | None
) -> list[tuple[str | None, ResolvedMethod, set[str] | None]]:
    """Each method on each base storage of the matrix's axis (expanded like models), with
    the tasks its entry is restricted to (None: all); a method that declares its own
    storage (qlora) runs on that one only. Where the axis names several storages, a
    method's label gains '@storage' so the leaderboard keeps lora on bf16 and lora on nf4
    apart."""
    out: list[tuple[str | None, ResolvedMethod, set[str] | None]] = []
    for method, only in zip(methods, restricted, strict=True):
        if method.base_storage or not storages:
            out.append((method.base_storage, method, only))
            continue
        for storage in storages:
            label = f"{method.label}@{storage}" if len(storages) > 1 else method.label
            out.append((storage, method.model_copy(update={"label": label}), only))
    return out


def _check_every_model_and_task_runs(models, tasks, file: str, line) -> None:
    """A task no model of the matrix can run, or a model that runs none of its tasks, is
    a mistake (a ViT over text tasks, an encoder over generation): say so before running."""
    issues = []
    for i, task in enumerate(tasks):
        if not any(runs_on(m, task) for m in models):
            kinds = ", ".join(sorted({f"{m.name} ({m.architecture})" for m in models}))
            issues.append(
                SpecIssue(
                    file, line("tasks", i), f"tasks.{i}",
                    f"task '{task.name}' is a {task.type} task, which no model here can run: "
                    f"{kinds}; {_who_runs(task.type)}",
                )
            )  # fmt: skip
    for i, model in enumerate(models):
        if not any(runs_on(model, t) for t in tasks):
            runs = ", ".join(types_run_by(model.architecture))
            issues.append(
                SpecIssue(
                    file, line("models", i), f"models.{i}",
                    f"model '{model.name}' ({model.architecture}) runs {runs} tasks, and "
                    "this matrix has none",
                )
            )  # fmt: skip
    if issues:
        raise SpecError(issues)


def _who_runs(kind: str) -> str:
    from suite.tasks.types import architectures_for

    need = " or ".join(architectures_for(kind))
    return f"{kind} tasks need {'an' if need[0] in 'aeiou' else 'a'} {need} model"
