"""The typed spec of a federated run, parsed once (frozen, unknown keys are errors).

A federated run takes an ordinary cell (method, task, model, seed, batch size) and runs
it as `clients` simulated clients over `rounds` rounds: each round every client starts
from the global adapter, takes `local_steps` optimiser steps on its own share of the
task's training split, and the server combines the clients' adapters with the
`aggregation` rule (suite/federated/aggregate.py).
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


class DirichletSplit(_Frozen):
    """Label skew: each class's examples are shared out by proportions drawn from
    Dirichlet(alpha, ..., alpha) over the clients (Hsu et al. 2019, arXiv 1909.06335);
    the smaller `alpha`, the more each client's label mix departs from the task's."""

    kind: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(gt=0)


Split = Annotated[IIDSplit | DirichletSplit, Field(discriminator="kind")]


class FederatedSpec(_Frozen):
    """`clients` clients, `rounds` rounds of `local_steps` local steps each; `split` the
    partition of the training split (seeded by `split_seed`, so every seed of a cell
    sees the same clients); `aggregation` a rule in suite/federated/aggregate.py."""

    clients: int = Field(ge=1)
    rounds: int = Field(ge=1)
    local_steps: int = Field(ge=1)
    split: Split = IIDSplit()
    split_seed: int = 0
    aggregation: str = "fedavg"

    @field_validator("aggregation")
    @classmethod
    def _known_rule(cls, name: str) -> str:
        from suite.federated.aggregate import rule

        rule(name)  # raises with a did-you-mean on an unknown name
        return name

    def digest(self) -> str:
        """A short hash of the spec (part of a run's id)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
