"""A matrix entry resolved into the method it runs: its `kind` chain followed down to the
implementation, its hyperparameters merged (root defaults, each link's own, the entry's
overrides, then ties), its version and labels gathered. Expansion (suite/cells.py) and
tuning (suite/tuning.py) build their cells from these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from suite.errors import SpecError
from suite.registry import Catalog, Entry
from suite.specs.base import Frozen
from suite.specs.matrix import MethodEntry
from suite.specs.method import MethodSpec, Tie


class ResolvedMethod(Frozen):
    """A method with its implementation found and hyperparameters merged."""

    label: str
    name: str
    kind: str
    family: str
    implementation: str
    params: dict[str, Any]
    lr: float
    weight_decay: float
    mergeable: bool | None = None
    # The implementation's version along the `kind` chain (1 + the sum of every link's
    # bumps, so bumping any link moves it); None while it is 1, so cells of methods that
    # never changed keep their ids. A bump makes a new cell id: `peftbench run` reruns it.
    version: int | None = None
    # The base storage the method is defined on (qlora: nf4); None: the matrix's axis.
    base_storage: str | None = None
    # Labels, not settings: never hashed.
    fidelity: str | None = Field(default=None, exclude=True)
    size_params: list[str] = Field(default_factory=list, exclude=True)
    # Ties still in force (the matrix entry did not set the tied value itself): tuning
    # re-applies them to every configuration it draws. Their effect is in `params`.
    ties: dict[str, Tie] = Field(default_factory=dict, exclude=True)
    # Where `file.py:attr` implementations live; machine-specific, so not hashed.
    impl_dir: str = Field(default="", exclude=True)
    # Where each hyperparameter the matrix entry overrides was written (file, line), so a
    # bad override is reported at the matrix, not at the method's YAML.
    override_at: dict[str, tuple[str, int | None]] = Field(default_factory=dict, exclude=True)

    @property
    def method_version(self) -> int:
        return self.version or 1


def implementation_chain(catalog: Catalog, entry: Entry[MethodSpec]) -> list[Entry[MethodSpec]]:
    """The method, the method its `kind` names, and so on down to the one with code."""
    chain = [entry]
    while chain[-1].spec.kind is not None:
        spec = chain[-1].spec
        parent = catalog.methods.get(
            spec.kind, file=str(chain[-1].path), line=chain[-1].line("kind"), field="kind"
        )
        if parent in chain:
            raise SpecError.single(
                str(entry.path), entry.line("kind"), "kind", f"kind cycle through '{parent.name}'"
            )
        chain.append(parent)
    return chain


def resolve_method(
    catalog: Catalog,
    item: MethodEntry,
    file: str = "",
    line: int | None = None,
    param_line: Callable[[str], int | None] | None = None,
) -> ResolvedMethod:
    """The method a matrix entry names, its `kind` chain resolved and its hyperparameters
    merged (root defaults, each link's own, the entry's overrides, then ties).

    `param_line(key)` gives the matrix line of an overridden key (for error messages)."""
    entry = catalog.methods.get(item.method, file=file, line=line, field="methods")
    chain = implementation_chain(catalog, entry)
    root = chain[-1]
    params: dict[str, Any] = {}
    training = root.spec.training
    for link in reversed(chain):  # root defaults first, the named method's own last
        params.update(link.spec.params)
        if link.spec.training.model_fields_set:
            training = training.model_copy(
                update=link.spec.training.model_dump(include=link.spec.training.model_fields_set)
            )
    params.update(item.params)
    ties: dict[str, Tie] = {}
    for link in reversed(chain):
        ties.update(link.spec.ties)
    ties = {k: t for k, t in ties.items() if k not in item.params}
    params = apply_ties(params, ties, str(entry.path), entry.line("ties"))
    mergeable = next((e.spec.mergeable for e in chain if e.spec.mergeable is not None), None)
    fidelity = next((e.spec.fidelity for e in chain if e.spec.fidelity is not None), None)
    sizes = next((e.spec.size_params for e in chain if e.spec.size_params is not None), [])
    version = 1 + sum((e.spec.version or 1) - 1 for e in chain)
    storage = next((e.spec.base_storage for e in chain if e.spec.base_storage), None)
    return ResolvedMethod(
        label=item.display,
        name=entry.name,
        kind=root.name,
        family=entry.spec.family,
        implementation=root.spec.implementation,
        params=params,
        lr=item.lr or training.lr,
        weight_decay=training.weight_decay,
        mergeable=mergeable,
        version=version if version > 1 else None,
        base_storage=storage,
        fidelity=fidelity,
        size_params=sizes,
        ties=ties,
        impl_dir=str(root.folder),
        override_at={k: (file, (param_line or (lambda _: line))(k) or line) for k in item.params},
    )


def apply_ties(
    params: dict[str, Any], ties: dict[str, Tie], file: str = "", line: int | None = None
) -> dict[str, Any]:
    """`params` with every tied value recomputed from the value it follows."""
    out = dict(params)
    for key, tie in ties.items():
        if tie.to not in out:
            raise SpecError.single(
                file,
                line,
                f"ties.{key}",
                f"'{key}' is tied to '{tie.to}', which is not a hyperparameter here",
            )
        out[key] = tie.value(out[tie.to])
    return out
