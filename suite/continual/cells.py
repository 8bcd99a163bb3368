"""Continual cells: one method trained through the matrix's task sequence.

A `ContinualCell` is a `Workload` of kind "continual" (suite/cell_kinds.py). It is built
from the matrix's trained cells (`expand_matrix`), one per model x method x base storage
x seed x strategy, with the tasks in the matrix's order; so every plan-time check of the
trained cells (shapes, targets, storages) also holds for it. Its stage i is the trained
cell of task i, which the runner reuses to load, prepare, train and score.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from pydantic import Field

from suite.cells import Cell, ResolvedMethod, canonical_json, semantic
from suite.errors import SpecError
from suite.specs.base import Frozen
from suite.specs.budget import default_protocol
from suite.specs.matrix import Budget, MatrixSpec
from suite.specs.model import ModelPreset
from suite.specs.profile import HardwareProfile
from suite.tasks.types import TaskSpec


class ContinualCell(Frozen):
    """One method x model x seed trained through `tasks` in order under `strategy`."""

    kind: ClassVar[str] = "continual"  # not a field: never dumped, never hashed
    matrix: str = Field(exclude=True)
    model: ModelPreset
    method: ResolvedMethod
    tasks: list[TaskSpec] = Field(min_length=2)
    task_dirs: list[str] = Field(exclude=True)
    strategy: str
    eval_examples: int | None = None
    seed: int
    budget: Budget
    profile: HardwareProfile
    timeout_s: float | None = Field(default=None, exclude=True)
    base_storage: str | None = None
    protocol: str | None = None

    @property
    def cell_id(self) -> str:
        data = {"kind": self.kind, **self.model_dump(mode="json")}
        return hashlib.sha256(canonical_json(semantic(data)).encode()).hexdigest()[:16]

    @property
    def protocol_name(self) -> str:
        return self.protocol or default_protocol(self.matrix, self.budget.model_dump(mode="json"))

    @property
    def sequence(self) -> list[str]:
        return [t.name for t in self.tasks]

    def title(self) -> str:
        order = " -> ".join(self.sequence)
        return f"{self.method.label} ({self.strategy}) x {order} x {self.model.name} (seed {self.seed})"

    def stage(self, i: int) -> Cell:
        """The trained cell of the sequence's i-th task (the runner's unit of work)."""
        return Cell(
            matrix=self.matrix, model=self.model, method=self.method, task=self.tasks[i],
            task_dir=self.task_dirs[i], seed=self.seed, budget=self.budget,
            profile=self.profile, timeout_s=self.timeout_s, base_storage=self.base_storage,
            protocol=self.protocol,
        )  # fmt: skip

    def stages(self) -> list[Cell]:
        return [self.stage(i) for i in range(len(self.tasks))]


def continual_cells(matrix: MatrixSpec, cells: list[Cell], file: str = "") -> list[ContinualCell]:
    """The continual cells of a matrix whose `continual` is set, from its trained cells:
    those of one model x method x storage x seed, in the order of the matrix's tasks."""
    spec = matrix.continual
    assert spec is not None
    groups: dict[tuple, dict[str, Cell]] = {}
    for cell in cells:
        key = (cell.model.name, cell.method.label, cell.base_storage, cell.seed)
        groups.setdefault(key, {})[cell.task.name] = cell
    out: dict[str, ContinualCell] = {}
    for by_task in groups.values():
        stages = [by_task[t] for t in matrix.tasks if t in by_task]
        if len(stages) != len(matrix.tasks):
            first = stages[0] if stages else next(iter(by_task.values()))
            raise SpecError.single(
                file, None, "tasks",
                f"{first.model.name} cannot run the whole sequence {matrix.tasks}",
            )  # fmt: skip
        first = stages[0]
        for strategy in spec.strategies:
            cell = ContinualCell(
                matrix=matrix.name, model=first.model, method=first.method,
                tasks=[c.task for c in stages], task_dirs=[c.task_dir for c in stages],
                strategy=strategy, eval_examples=spec.eval_examples, seed=first.seed,
                budget=first.budget, profile=first.profile, timeout_s=first.timeout_s,
                base_storage=first.base_storage, protocol=first.protocol,
            )  # fmt: skip
            out.setdefault(cell.cell_id, cell)
    return list(out.values())
