"""What the pages show from the plugins: a method's citation, source and conformance
claims (the Method page), and every method's name as its paper writes it (`written_names`).

The stored `method_yaml` is the resolved spec that produced the results; the catalogue
(the same plugin folders `peftbench run` sees, including $PEFTBENCH_PLUGINS) adds what
is not part of a cell: the paper, the code the implementation follows, and which
conformance checks it claims (tests/test_conformance.py runs them on every method).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
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


@lru_cache(maxsize=1)
def _entry_names() -> dict[tuple[str, str], str]:
    """(matrix, row label) -> the entry's written name, for every matrix of the catalogue."""
    catalog = _catalog()
    return {
        (entry.name, e.display): e.written(_display(e.method))
        for entry in catalog.matrices
        for e in entry.spec.entries()
    }


def _display(method: str) -> str | None:
    """The registered method's `display`, or None (not registered here, or none declared)."""
    methods = _catalog().methods
    return methods.get(method).spec.display if method in methods else None


def written_name(label: str, matrices: Iterable[str] = ()) -> str:
    """A row's method as people write it, from what the row stores: its label and the
    matrices that produced it. The entry of those matrices under that label gives its
    name (`MethodEntry.written`: its `display_name`, or its method's `display` under the
    method's own name); a row no matrix here explains is the registered method of that
    name (an unlabelled entry's rows carry the method's name), written as its `display`.
    Anything else (a user's method with no `display`, a labelled variant of an unknown
    matrix, matrices that disagree) keeps its label."""
    try:
        entries = _entry_names()
        found = {entries[(m, label)] for m in matrices if (m, label) in entries}
        if found:
            return found.pop() if len(found) == 1 else label
        return _display(label) or label
    except Exception:  # noqa: BLE001 - a broken plugin must not take the page down
        return label


def written_names(rows: pd.DataFrame, column: str = "method") -> pd.Series:
    """Each row's written name (`written_name` of its label in `column` and the matrices in
    its `matrix`, comma-separated where a row merges several). Two labels written alike in
    `rows` (a labelled variant sharing its method's name) each add their label, so every
    label shown stays distinct."""
    labels = rows[column].astype(str)
    listed = rows["matrix"] if "matrix" in rows else pd.Series(None, index=rows.index)
    matrices: dict[str, set[str]] = {}
    # One pass over the distinct pairs: a page of 100k rows holds a few dozen.
    pairs = pd.DataFrame({"label": labels, "matrix": listed}).drop_duplicates()
    for label, names in zip(pairs["label"], pairs["matrix"], strict=True):
        found = matrices.setdefault(label, set())
        found.update(n for n in (names.split(",") if isinstance(names, str) else []) if n)
    return labels.map(distinct({k: written_name(k, v) for k, v in matrices.items()}))


def posthoc_names(labels: pd.Series, methods: pd.Series) -> pd.Series:
    """Each post-hoc row's method as its paper writes it: the merge or compress method's
    `display` where the row's label is the method's own name; a labelled stage entry
    ("magnitude-50") keeps its label, and so does a method with no `display`."""
    try:
        registry = _catalog().posthoc
        shown = {
            m: registry.get(m).spec.display or m for m in set(methods.dropna()) if m in registry
        }
    except Exception:  # noqa: BLE001 - a broken plugin must not take the page down
        shown = {}
    own = labels.astype(str) == methods.astype(str)
    return labels.where(~own, methods.map(lambda m: shown.get(m, m)))


def with_names(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with `name`: each method as its paper writes it (`written_names`), what tables
    and charts show; `method` stays the label that selectors, joins and CSVs key on."""
    return rows.assign(name=written_names(rows))


def distinct(names: dict[str, str]) -> dict[str, str]:
    """label -> written name, with the label added to every name two labels share."""
    counts = Counter(names.values())
    return {k: v if counts[v] == 1 or v == k else f"{v} ({k})" for k, v in names.items()}


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
