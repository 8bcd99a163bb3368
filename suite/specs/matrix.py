"""Matrix spec: `suite/matrices/<name>.yaml`, the method x task x model x seed grid."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from suite.specs.base import Frozen, Name


class Budget(Frozen):
    """The training budget every method in a matrix gets (stored with every row)."""

    epochs: PositiveFloat = 1.0
    max_steps: PositiveInt | None = None
    batch_size: PositiveInt = 16
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0)
    grad_clip: NonNegativeFloat = 1.0
    max_train_samples: PositiveInt | None = None
    # A budget in training tokens instead of epochs: steps = tokens // (batch_size x the
    # task's max_length), still capped by max_steps. None (unset) keeps older cell ids.
    tokens: PositiveInt | None = None


class TuningSpec(Frozen):
    """An equal tuning budget: every method draws `trials` configurations from its own
    search space (suite/tuning.py), selected on the validation split only; the selected
    configuration then runs with the matrix's seeds for the reported test numbers."""

    trials: PositiveInt = 4
    sampler: Literal["grid", "random"] = "random"
    seed: int = 0


class ReferenceSpec(Frozen):
    """Reference texts for forgetting: a causal LM's loss on them before and after."""

    data_files: str | list[str]
    text_field: str = "text"
    max_texts: PositiveInt = 64
    max_length: PositiveInt = 128


class MethodEntry(Frozen):
    """A method in a matrix, optionally with overridden hyperparameters or learning rate."""

    method: Name
    label: Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    lr: PositiveFloat | None = None

    @property
    def display(self) -> str:
        return self.label or self.method


class MatrixSpec(Frozen):
    """A benchmark matrix."""

    name: Name
    description: str = ""
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

    @model_validator(mode="after")
    def _unique_labels(self) -> MatrixSpec:
        labels = [e if isinstance(e, str) else e.display for e in self.methods]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"method labels repeat: {dupes}; give each entry a distinct label")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds repeat")
        if self.base_storage and len(set(self.base_storage)) != len(self.base_storage):
            raise ValueError("base_storage repeats")
        return self

    def entries(self) -> list[MethodEntry]:
        return [MethodEntry(method=e) if isinstance(e, str) else e for e in self.methods]
