"""Method spec: `methods/<name>/method.yaml`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from suite.specs.base import Citation, Frozen, Name

# Keys of a search space that tune the optimiser rather than the method itself.
TRAINING_KEYS = ("lr", "weight_decay")


class SearchDim(Frozen):
    """One dimension of a method's search space: exactly one of the forms below."""

    choices: list[Any] | None = Field(default=None, min_length=1)
    log_uniform: tuple[PositiveFloat, PositiveFloat] | None = None
    uniform: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchDim:
        given = [k for k in ("choices", "log_uniform", "uniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of choices, log_uniform, uniform")
        bounds = self.log_uniform or self.uniform
        if bounds is not None and bounds[0] > bounds[1]:
            raise ValueError(f"lower bound {bounds[0]} is above upper bound {bounds[1]}")
        return self


class Tie(Frozen):
    """A hyperparameter that follows another: value = times x params[to].

    RandLoRA's alpha is 20 r and PiSSA's alpha is r in their reference code, so a search
    (or a matrix override) over r must move alpha with it.
    """

    to: str
    times: PositiveFloat = 1.0

    def value(self, base: Any) -> Any:
        value = self.times * base
        # Integers stay integers (a tied alpha of 640, not 640.0: cell hashes see the JSON).
        if isinstance(base, int) and float(self.times).is_integer():
            return int(value)
        return value


class MethodTraining(Frozen):
    """Optimiser settings the method prefers; a matrix or a tuning trial may override."""

    lr: PositiveFloat = 5e-4
    weight_decay: float = Field(default=0.0, ge=0.0)


class ConformanceSpec(Frozen):
    """How the method joins the conformance suite (`peftbench validate --conformance`).

    A method that does not claim a property says so here, with a note saying why
    (e.g. FourierFT's default init is not zero, so the model changes at init).
    """

    params: dict[str, Any] = Field(default_factory=dict)
    identity_at_init: bool = True
    formula: bool = True
    loss_decreases: bool = True
    note: str = ""


class MethodSpec(Frozen):
    """A PEFT method: either its own implementation or a built-in `kind` plus hyperparameters."""

    name: Name
    # The method's name as its paper writes it ("LoRA", "(IA)3"), for tables people read
    # (the league's README table); rows stay keyed on `name`. Prose: never hashed.
    display: str | None = None
    family: str = "other"
    description: str = ""
    kind: Name | None = None
    implementation: str | None = None
    citation: Citation | None = None
    source: str | None = None
    mergeable: bool | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    training: MethodTraining = MethodTraining()
    search_space: dict[str, SearchDim] = Field(default_factory=dict)
    # Hyperparameters tied to another (alpha: {to: r, times: 20}); a matrix entry that
    # sets the tied one itself unties it.
    ties: dict[str, Tie] = Field(default_factory=dict)
    status: Literal["stable", "experimental", "test-only"] = "stable"
    # The hyperparameters that set the adapter's size (rank, density, number of
    # frequencies...): the rank_sweep view plots quality against them. Not hashed.
    size_params: list[str] | None = None
    # What the implementation may claim (docs/fidelity.md): `reference` only with a golden
    # test against numbers the method's own code produced; `paper` from the full text;
    # `reconstructed` from abstracts or summaries. Not hashed: a label, not a setting.
    fidelity: Literal["reference", "paper", "reconstructed"] | None = None
    # Bumped whenever the implementation changes what it computes: older rows go stale
    # and `peftbench run` reruns them (version 1 stays out of the cell hash).
    version: PositiveInt | None = None
    conformance: ConformanceSpec = ConformanceSpec()
    # The base storage the method is defined on (QLoRA: LoRA on an nf4 base); it overrides
    # a matrix's `base_storage` axis for this method's cells (suite/models/storage.py).
    base_storage: Literal["bf16", "nf4", "int8", "fp8"] | None = None

    @model_validator(mode="after")
    def _kind_or_implementation(self) -> MethodSpec:
        if (self.kind is None) == (self.implementation is None):
            raise ValueError(
                "give exactly one of 'implementation' (module:attr or file.py:attr) "
                "or 'kind' (the name of a built-in method to reuse)"
            )
        tuned = sorted(set(self.ties) & set(self.search_space))
        if tuned:
            raise ValueError(f"{tuned} are tied to another hyperparameter and cannot be searched")
        cyclic = sorted(k for k, t in self.ties.items() if t.to in self.ties)
        if cyclic:
            raise ValueError(f"ties may not chain: {cyclic} follow another tied value")
        if self.implementation is not None and (self.fidelity is None or self.version is None):
            raise ValueError(
                "a method with its own implementation declares `fidelity: reference | paper | "
                "reconstructed` and an integer `version` (docs/fidelity.md); a `kind:` method "
                "inherits them"
            )
        if self.implementation is not None and ":" not in self.implementation:
            raise ValueError(
                f"implementation {self.implementation!r} must look like 'module:Class' "
                "or 'file.py:Class'"
            )
        return self
