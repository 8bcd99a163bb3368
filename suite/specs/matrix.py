"""Matrix spec: `suite/matrices/<name>.yaml`, the method x task x model x seed grid."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from suite.specs.base import Frozen, Name, repeated
from suite.specs.budget import Budget, default_protocol
from suite.specs.federated import FederatedTrack
from suite.specs.posthoc import PosthocStageSpec


class TuningSpec(Frozen):
    """An equal tuning budget: every method draws `trials` configurations from its own
    search space (suite/tuning.py), selected on the validation split only; the selected
    configuration then runs with the matrix's seeds for the reported test numbers."""

    trials: PositiveInt = 4
    # random: independent draws (league-v1's rule); latin: one draw per stratum of every
    # dimension, so K trials cannot all miss a region of the space (suite/tuning.py).
    sampler: Literal["grid", "random", "latin"] = "random"
    seed: int = 0
    # true: trial 0 is the method's own configuration (its default lr and params, as its
    # authors ship it) and the sampler draws the other trials - 1, so no method is ranked
    # only on draws that miss where it works. Unset (None) is off, and moves no cell id.
    default_first: bool | None = None


class ReferenceSpec(Frozen):
    """Reference texts for forgetting: a causal LM's loss on them before and after."""

    data_files: str | list[str]
    # The files ship inside this installed Python package (paths inside it, as a task's
    # `loader: package` reads them), so a matrix can name offline text without a local path.
    package: str | None = None
    text_field: str = "text"
    max_texts: PositiveInt = 64
    max_length: PositiveInt = 128


class ContinualSpec(Frozen):
    """A continual-learning matrix (docs/continual.md): the matrix's `tasks`, in their
    order, are the sequence T1..Tn; each cell trains through it and scores every task
    after every stage (the accuracy matrix). `strategies` name how the adapter carries
    over from one task to the next (suite/continual/strategies.py)."""

    strategies: list[Name] = Field(default_factory=lambda: ["sequential", "per-task"], min_length=1)
    # Score each task on at most this many test examples (the split's first, a fixed
    # slice): n x n evaluations per cell. None: the whole test split.
    eval_examples: PositiveInt | None = None


class MethodEntry(Frozen):
    """A method in a matrix, optionally with overridden hyperparameters or learning rate."""

    method: Name
    label: Name | None = None
    # A labelled entry's name as people write it ("rsLoRA" for lora with rslora: true),
    # where the method's own `display` would not fit it. The row keeps `label`.
    display_name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    lr: PositiveFloat | None = None
    # Only these of the matrix's tasks (default: all); e.g. a full fine-tune that only a
    # compress stage on one task needs.
    tasks: list[Name] | None = Field(default=None, min_length=1)

    @property
    def display(self) -> str:
        """The entry's row label (what the store keys its rows on)."""
        return self.label or self.method

    def written(self, method_display: str | None) -> str:
        """The entry's name as people write it, given its method's `display`: its own
        `display_name`, else the method's (only under the method's own name: a labelled
        entry is another configuration), else its label."""
        own = self.display == self.method  # no label, or a label that repeats the name
        return self.display_name or (method_display if own else None) or self.display


class MatrixSpec(Frozen):
    """A benchmark matrix."""

    name: Name
    description: str = ""
    # The benchmark protocol its rows belong to (docs/tasks-and-fairness.md, "Protocols"):
    # rows of different protocols are never ranked, charted or compared together. A
    # declared protocol (`league-v1`) is shared by every matrix that names it and enters
    # each cell's id; unset, the protocol is `<name>@<budget tag>` (protocol_name).
    protocol: Name | None = None
    models: list[Name] = Field(min_length=1)
    methods: list[Name | MethodEntry] = Field(min_length=1)
    tasks: list[Name] = Field(min_length=1)
    # The reported numbers are over these seeds (3 unless the matrix says otherwise).
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    profile: Name = "cpu-local"
    budget: Budget = Budget()
    timeout_s: PositiveFloat | None = None
    baseline_method: Name = "lora"
    tuning: TuningSpec | None = None
    reference: ReferenceSpec | None = None
    # Base storages to run every method on, expanded like models (suite/models/storage.py:
    # bf16, nf4, int8, fp8); unset: the preset's own dtype, as before. A method that
    # declares its own `base_storage` (qlora) keeps it.
    base_storage: list[Literal["bf16", "nf4", "int8", "fp8"]] | None = Field(
        default=None, min_length=1
    )
    # Save every trained cell's adapter (or whole model) as an artifact; cells a post-hoc
    # stage consumes always save (docs/posthoc.md).
    save_artifacts: bool | None = None
    # Merge and compress stages run on the trained cells' artifacts once they are stored.
    posthoc: list[PosthocStageSpec] | None = None
    # A continual-learning matrix: its cells train through `tasks` in order (suite/continual/).
    continual: ContinualSpec | None = None
    # A federated matrix: its cells run as simulated clients and a server (suite/federated/).
    federated: FederatedTrack | None = None

    @model_validator(mode="after")
    def _unique_labels(self) -> MatrixSpec:
        dupes = repeated([e if isinstance(e, str) else e.display for e in self.methods])
        if dupes:
            raise ValueError(f"method labels repeat: {dupes}; give each entry a distinct label")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds repeat")
        if self.base_storage and len(set(self.base_storage)) != len(self.base_storage):
            raise ValueError("base_storage repeats")
        for entry in self.entries():
            unknown = sorted(set(entry.tasks or []) - set(self.tasks))
            if unknown:
                raise ValueError(
                    f"method {entry.display!r} names tasks not in the matrix: {unknown}"
                )
        self._check_continual()
        self._check_federated()
        stages = [s.name for s in self.posthoc or []]
        if len(set(stages)) != len(stages):
            raise ValueError(f"post-hoc stage names repeat: {sorted(stages)}")
        return self

    def _check_continual(self) -> None:
        if self.continual is None:
            return
        if len(self.tasks) < 2:
            raise ValueError("a continual matrix needs a sequence of at least 2 tasks")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"continual: the task sequence repeats a task: {self.tasks}")
        if dupes := repeated(self.continual.strategies):
            raise ValueError(f"continual: strategies repeat: {dupes}")
        clash = [n for n, v in (("posthoc", self.posthoc), ("tuning", self.tuning)) if v]
        clash += [f"methods ({e.display}).tasks" for e in self.entries() if e.tasks]
        if clash:
            raise ValueError(
                f"a continual matrix trains every method on the whole sequence; "
                f"drop {', '.join(clash)}"
            )

    def _check_federated(self) -> None:
        if self.federated is None:
            return
        clash = [
            n
            for n, v in (
                ("continual", self.continual),
                ("posthoc", self.posthoc),
                ("tuning", self.tuning),
            )
            if v
        ]
        if clash:
            raise ValueError(
                f"a federated matrix runs its cells as clients and a server; drop {', '.join(clash)}"
            )

    @property
    def protocol_name(self) -> str:
        """The declared protocol, or the default named after the matrix and its budget."""
        return self.protocol or default_protocol(self.name, self.budget.model_dump(mode="json"))

    def entries(self) -> list[MethodEntry]:
        return [MethodEntry(method=e) if isinstance(e, str) else e for e in self.methods]
