"""What the Method page shows from a method's plugin: citation, source, conformance claims.

The stored `method_yaml` is the resolved spec that produced the results; the catalogue
(the same plugin folders `peftbench run` sees, including $PEFTBENCH_PLUGINS) adds what
is not part of a cell: the paper, the code the implementation follows, and which
conformance checks it claims (tests/test_conformance.py runs them on every method).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

CHECKS = {
    "formula": "trainable-parameter count matches the paper's formula",
    "identity_at_init": "model unchanged at initialisation",
    "loss_decreases": "loss decreases on a fixed batch",
}
ALWAYS = (
    "merged vs unmerged outputs within 1e-5 (mergeable methods)",
    "gradients only on trainable tensors",
    "safetensors save/reload",
)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    citation: str | None
    url: str | None
    source: str | None
    description: str
    conformance: list[tuple[str, str]]
    note: str


@lru_cache(maxsize=1)
def _catalog():
    from suite.registry import Catalog

    return Catalog.discover()


def method_info(name: str) -> MethodInfo | None:
    """The catalogue's view of a registered method, or None if it is not registered here."""
    from suite.cells import implementation_chain

    try:
        catalog = _catalog()
    except Exception:  # noqa: BLE001 - a broken plugin must not take the page down
        return None
    if name not in catalog.methods:
        return None
    entry = catalog.methods.get(name)
    chain = [e.spec for e in implementation_chain(catalog, entry)]
    citation = next((s.citation for s in chain if s.citation), None)
    source = next((s.source for s in chain if s.source), None)
    spec = entry.spec
    rows = [
        (text, "claimed" if getattr(spec.conformance, key) else "not claimed")
        for key, text in CHECKS.items()
    ]
    rows += [(text, "required") for text in ALWAYS]
    return MethodInfo(
        name=name,
        citation=citation.short() if citation else None,
        url=citation.url if citation else None,
        source=source,
        description=spec.description,
        conformance=rows,
        note=spec.conformance.note,
    )


@lru_cache(maxsize=32)
def class_names(task: str) -> tuple[str, ...] | None:
    """The registered task's class names in class-id order, or None (not registered here,
    not a classification task, or its data cannot be read: the ids are shown then)."""
    from suite.tasks.data import class_names as derive

    try:
        entry = _catalog().tasks.get(task)
        names = derive(entry.spec, entry.folder)
    except Exception:  # noqa: BLE001 - a missing data package must not take the page down
        return None
    return tuple(names) if names else None


def with_class_names(rows: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`rows` with the class ids in `columns` replaced by the names of each row's task
    (predictions are stored as ids); ids without a known name are kept as they are."""
    rows = rows.copy()
    for task, part in rows.groupby("task"):
        names = class_names(str(task))
        if not names:
            continue
        for column in columns:
            rows.loc[part.index, column] = part[column].map(lambda v, n=names: _name(v, n))
    return rows


def _name(value: object, names: tuple[str, ...]) -> object:
    """The name of a class id (stored as text, "3" or "3.0"; or a number, 3 or 3.0), else
    the value as it is."""
    try:
        number = float(str(value))
    except ValueError:
        return value
    if not number.is_integer() or not 0 <= number < len(names):
        return value
    return names[int(number)]
