"""The typed specs of the federated track, parsed once (frozen, unknown keys are errors).

A federated run takes an ordinary cell (method, task, model, seed, batch size) and runs
it as `clients` simulated clients over `rounds` rounds: each round every client starts
from the global adapter, takes `local_steps` optimiser steps on its own share of the
task's training split, and the server combines the clients' adapters with the
`aggregation` rule (suite/federated/aggregate.py). A matrix's `federated:` section
(`FederatedTrack`) expands into one run per trained cell x split x aggregation. Rule
names are checked against the rules when the matrix is planned or validated
(suite/federated/plan.py `check_rules`): the specs do not import the engine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IIDSplit(_Frozen):
    """A uniform random partition: client shares differ in size by at most one."""

    kind: Literal["iid"] = "iid"

    def words(self) -> str:
        return "iid"


class DirichletSplit(_Frozen):
    """Label skew: each class's examples are shared out by proportions drawn from
    Dirichlet(alpha, ..., alpha) over the clients (Hsu et al. 2019, arXiv 1909.06335);
    the smaller `alpha`, the more each client's label mix departs from the task's."""

    kind: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(gt=0)

    def words(self) -> str:
        return f"dirichlet({self.alpha:g})"


Split = Annotated[IIDSplit | DirichletSplit, Field(discriminator="kind")]


class PrivacySpec(_Frozen):
    """Client-side DP-SGD as the FedSVD authors' clients run it (Opacus): every
    example's gradient clipped to L2 norm `max_grad_norm`, Gaussian noise of standard
    deviation `noise_multiplier * max_grad_norm` added to their sum, divided by the
    batch size. The noise multiplier is given, not derived from a target epsilon (no
    privacy accountant here)."""

    max_grad_norm: float = Field(gt=0)
    noise_multiplier: float = Field(ge=0)


class FederatedSpec(_Frozen):
    """`clients` clients, `rounds` rounds of `local_steps` local steps each; `split` the
    partition of the training split (seeded by `split_seed`, so every seed of a cell
    sees the same clients); `aggregation` a rule in suite/federated/aggregate.py;
    `dp` client-side DP-SGD (None: none)."""

    clients: int = Field(ge=1)
    rounds: int = Field(ge=1)
    local_steps: int = Field(ge=1)
    split: Split = IIDSplit()
    split_seed: int = 0
    aggregation: str = "fedavg"
    dp: PrivacySpec | None = None

    def digest(self) -> str:
        """A short hash of the spec (part of a run's id)."""
        text = json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def words(self) -> str:
        dp = f", dp(C={self.dp.max_grad_norm:g}, z={self.dp.noise_multiplier:g})" if self.dp else ""
        return f"{self.aggregation}, {self.clients} clients {self.split.words()}{dp}"


class FederatedTrack(_Frozen):
    """A matrix's `federated:` section (docs/federated.md): every trained cell of the
    matrix runs federated once per split x aggregation rule."""

    clients: int = Field(ge=1)
    rounds: int = Field(ge=1)
    local_steps: int = Field(ge=1)
    splits: list[Split] = Field(default_factory=lambda: [IIDSplit()], min_length=1)
    split_seed: int = 0
    aggregations: list[str] = Field(default_factory=lambda: ["fedavg"], min_length=1)
    dp: PrivacySpec | None = None

    @field_validator("aggregations")
    @classmethod
    def _known_rules(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"aggregations repeat: {names}")
        return names

    @field_validator("splits")
    @classmethod
    def _distinct_splits(cls, splits: list) -> list:
        if len({s.words() for s in splits}) != len(splits):
            raise ValueError(f"splits repeat: {[s.words() for s in splits]}")
        return splits

    def runs(self) -> list[FederatedSpec]:
        """One run spec per split x aggregation, in the matrix's order."""
        common = self.model_dump(exclude={"splits", "aggregations"})
        return [
            FederatedSpec(**common, split=split, aggregation=name)
            for split in self.splits
            for name in self.aggregations
        ]
