"""Post-hoc stages: `posthoc/<name>/posthoc.yaml` (a merge or compress method) and the
`posthoc:` section of a matrix, which runs them on the matrix's trained cells.

A post-hoc cell consumes the saved artifacts of trained cells (adapters, or whole models
for full fine-tuning) and never retrains them: a merge combines one trained cell per
task, a compress stage shrinks one trained cell. Its id hashes its own spec and its
inputs' cell ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import Field, PositiveInt, model_validator

from suite.specs.base import Citation, Frozen, Name, repeated
from suite.specs.budget import Budget
from suite.specs.method import SearchDim


@dataclass(frozen=True)
class StageKind:
    """What a kind of stage makes of the matrix's trained cells: those equal on
    `group_by` (attribute paths) are one post-hoc cell's inputs, kept when there are at
    least `min_inputs`; a `calibrated` stage's cells carry its calibration set; `view`:
    the store's view that shows its rows (suite/store/posthoc.py). How one of its cells
    runs is suite/posthoc/run.py's STAGE_RUNS[kind]."""

    group_by: tuple[str, ...]
    min_inputs: int
    calibrated: bool
    view: str


# A new kind of stage is an entry here and its function in STAGE_RUNS.
STAGE_KINDS: dict[str, StageKind] = {
    # One trained cell per task (same base, same seed) merged into one.
    "merge": StageKind(("model.name", "seed"), min_inputs=2, calibrated=False, view="merging"),
    # One trained cell per task (same base, same seed); each task's update generated
    # from the other tasks' alone (ICM-LoRA), scored as a merge is.
    "generate": StageKind(("model.name", "seed"), min_inputs=2, calibrated=False, view="merging"),
    # One trained cell shrunk.
    "compress": StageKind(("cell_id",), min_inputs=1, calibrated=True, view="compression"),
}
Stage = Literal["merge", "generate", "compress"]  # spelled out for type checkers: STAGE_KINDS' keys
assert set(get_args(Stage)) == set(STAGE_KINDS), "Stage must list STAGE_KINDS' keys"


class PosthocMethodSpec(Frozen):
    """A post-hoc method: its stage, implementation, hyperparameters and what it may claim."""

    name: Name
    # The name papers use ("TIES-merging"), what the leaderboard shows; not hashed.
    display: str | None = None
    stage: Stage
    family: str = "other"
    description: str = ""
    implementation: str
    citation: Citation | None = None
    source: str | None = None
    # docs/fidelity.md, as for training methods. Not hashed (a label, not a setting).
    fidelity: Literal["reference", "paper", "reconstructed"]
    # Bumped whenever the implementation changes what it computes (1 is not hashed).
    version: PositiveInt
    params: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, SearchDim] = Field(default_factory=dict)
    # What a merge needs from its inputs: any update that folds into the weights, the
    # factors of low-rank adapters (LoRA-LEGO, RMM), or sparse deltas (LT-SFT's).
    requires: Literal["any", "low-rank", "sparse"] = "any"
    # A stage that trains (Sparse Model Soups) runs under a budget, stored with its row.
    trains: bool = False
    # The hyperparameters that set the result's size (sparsity, merged rank, basis size).
    size_params: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _implementation_form(self) -> PosthocMethodSpec:
        if ":" not in self.implementation:
            raise ValueError(
                f"implementation {self.implementation!r} must look like 'module:Class' "
                "or 'file.py:Class'"
            )
        return self


class PosthocEntry(Frozen):
    """A post-hoc method in a matrix stage, optionally with overridden hyperparameters."""

    method: Name
    label: Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def display(self) -> str:
        return self.label or self.method


class PosthocInputs(Frozen):
    """The trained cells a stage consumes: those of one method entry of the matrix (by
    its label), on these tasks (default: every task of the matrix)."""

    method: Name
    tasks: list[Name] | None = Field(default=None, min_length=1)


class CalibrationSpec(Frozen):
    """A fixed slice of the training split (never validation or test): `examples`
    examples of a permutation seeded by `seed`, the same for every method and seed."""

    examples: PositiveInt = 64
    seed: int = 0
    batch_size: PositiveInt = 16


class PosthocStageSpec(Frozen):
    """One stage of a matrix's `posthoc:` section."""

    name: Name
    stage: Stage
    inputs: PosthocInputs
    methods: list[Name | PosthocEntry] = Field(min_length=1)
    # Compress stages: the calibration set of the methods that read activations.
    calibration: CalibrationSpec = CalibrationSpec()
    # Stages whose methods train (Sparse Model Soups): the budget of each retraining
    # run (default: the matrix's budget). It counts toward fairness like any other.
    budget: Budget | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _unique_labels(self) -> PosthocStageSpec:
        dupes = repeated([e if isinstance(e, str) else e.display for e in self.methods])
        if dupes:
            raise ValueError(f"method labels repeat in stage {self.name!r}: {dupes}")
        return self

    def entries(self) -> list[PosthocEntry]:
        return [PosthocEntry(method=e) if isinstance(e, str) else e for e in self.methods]
