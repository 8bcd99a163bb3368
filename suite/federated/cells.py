"""Federated round cells: one round of one federated run, a `Workload` of kind "federated".

A federated run is a trained cell of the matrix (model, method, task, seed, budget) run
under one `FederatedSpec` (a split and an aggregation rule of the matrix's `federated:`
section). Its rounds are cells of their own, run one after another (round k reads the
global adapter round k - 1 stored), so the driver stores every round as it completes
and a killed run resumes at the round after the last one stored (suite/federated/plan.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from suite.cells import Cell, canonical_json, semantic
from suite.specs.base import Frozen
from suite.specs.federated import FederatedSpec


def fed_run_id(cell: Cell, spec: FederatedSpec) -> str:
    """A federated run's id: its trained cell and its spec."""
    return f"{cell.cell_id[:16]}-{spec.digest()}"


class FederatedRound(Frozen):
    """Round `round` of the federated run of `cell` under `spec` (round 0: the initial
    adapter, scored; rounds 1..R: client training and aggregation)."""

    kind: ClassVar[str] = "federated"  # not a field: never dumped, never hashed
    cell: Cell
    spec: FederatedSpec
    round: int = Field(ge=0)
    # Where the run's global adapters are kept (beside the store); machine-specific.
    state_root: str = Field(exclude=True)

    @property
    def cell_id(self) -> str:
        data = {"kind": self.kind, "cell": self.cell.cell_id, "spec": self.spec.model_dump(mode="json"),
                "round": self.round}  # fmt: skip
        return hashlib.sha256(canonical_json(semantic(data)).encode()).hexdigest()[:16]

    @property
    def fed_run(self) -> str:
        return fed_run_id(self.cell, self.spec)

    # What the executors and the worker read of any workload.
    @property
    def matrix(self) -> str:
        return self.cell.matrix

    @property
    def model(self):
        return self.cell.model

    @property
    def seed(self) -> int:
        return self.cell.seed

    @property
    def profile(self):
        return self.cell.profile

    @property
    def budget(self):
        return self.cell.budget

    @property
    def timeout_s(self) -> float | None:
        return self.cell.timeout_s

    @property
    def protocol_name(self) -> str:
        return self.cell.protocol_name

    @property
    def rule_fidelity(self) -> str:
        """The aggregation rule's fidelity label (stored with every round)."""
        from suite.federated.aggregate import rule

        return rule(self.spec.aggregation).fidelity

    @property
    def method(self):
        return self.cell.method

    @property
    def task(self):
        return self.cell.task

    @property
    def phase(self) -> str:
        """What `run --dry-run` lists beside the cell's names."""
        return f"{self.spec.words()} round {self.round}/{self.spec.rounds}"

    def stages(self) -> list[Cell]:
        """The trained cell whose model and data the round loads."""
        return [self.cell]

    def state_path(self, k: int) -> Path:
        """The global adapter after round k."""
        return Path(self.state_root) / self.fed_run / f"round-{k:04d}.safetensors"

    def title(self) -> str:
        return f"{self.cell.title()} federated ({self.spec.words()}) round {self.round}/{self.spec.rounds}"

    def next(self) -> FederatedRound:
        return self.model_copy(update={"round": self.round + 1})
