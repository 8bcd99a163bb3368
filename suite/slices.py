"""A slice of a matrix: the cells whose task, method, model and seed are among the names
given (an axis left empty keeps all). A slice runs exactly the cells the whole matrix
would (the matrix name is not part of a cell's id, and a tuned method samples its trials
from its own label), so a long protocol can run in pieces, most wanted first, and every
piece's results are complete comparisons as soon as they finish; the full matrix later
skips what the slices stored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suite.cells import Cell
from suite.errors import SpecError, SpecIssue, unknown_name_message


@dataclass(frozen=True)
class Slice:
    tasks: frozenset[str] = frozenset()
    methods: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    seeds: frozenset[int] = frozenset()

    @classmethod
    def of(cls, tasks=(), methods=(), models=(), seeds=()) -> Slice:
        return cls(frozenset(tasks), frozenset(methods), frozenset(models), frozenset(seeds))

    @property
    def empty(self) -> bool:
        return not (self.tasks or self.methods or self.models or self.seeds)

    def keeps(self, cell: Cell) -> bool:
        return all(
            not wanted or value in wanted
            for wanted, value in zip(self._axes(), _values(cell), strict=True)
        )

    def select(self, cells: list[Cell], matrix_file: str) -> list[Cell]:
        """The cells in the slice; a name the matrix does not have is a spec error (every
        such name at once), so a typo never runs an empty slice."""
        issues = []
        for axis, wanted, have in zip(_AXES, self._axes(), _axis_values(cells), strict=True):
            for name in sorted(wanted - have, key=str):
                message = unknown_name_message(f"{axis} in this matrix", str(name), map(str, have))
                issues.append(SpecIssue(matrix_file, None, f"--{axis}", message))
        if issues:
            raise SpecError(issues)
        return [c for c in cells if self.keeps(c)]

    def words(self) -> str:
        parts = [
            f"{axis} {', '.join(map(str, sorted(w)))}"
            for axis, w in zip(_AXES, self._axes(), strict=True)
            if w
        ]
        return "; ".join(parts)

    def _axes(self) -> tuple[frozenset, ...]:
        return (self.tasks, self.methods, self.models, self.seeds)


_AXES = ("task", "method", "model", "seed")


def _values(cell: Cell) -> tuple:
    return (cell.task.name, cell.method.label, cell.model.name, cell.seed)


def _axis_values(cells: Iterable[Cell]) -> list[set]:
    out: list[set] = [set() for _ in _AXES]
    for cell in cells:
        for i, value in enumerate(_values(cell)):
            out[i].add(value)
    return out
