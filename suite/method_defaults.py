"""A method's defaults, read from its `Params` class: the one schema of its hyperparameters.

A method.yaml's `params` stay the plan-time record of the settings a cell hashes (matrix
expansion is pure and imports no method code, and the cell id of every stored row hashes
exactly those keys). For a method with its own implementation they may only repeat the
schema's defaults: `repeated_defaults_that_differ` finds a copy that drifted, and
tests/test_method_defaults.py fails on it. A `kind:` method's params are overrides of its
root's schema (PiSSA's `init: pissa`). The docs' defaults table
(docs/method-defaults.md) is `peftbench list methods --format md`, generated from here.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from suite.cells import implementation_chain, resolve_method
from suite.plugins import load_object
from suite.registry import Catalog, Entry
from suite.specs.matrix import MethodEntry
from suite.specs.method import MethodSpec


def params_model(catalog: Catalog, entry: Entry[MethodSpec]) -> type[BaseModel]:
    """The `Params` class of the implementation the method's `kind` chain ends in."""
    root = implementation_chain(catalog, entry)[-1]
    return load_object(str(root.spec.implementation), root.folder).Params


def schema_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Every field's default as the schema declares it; a required field has none."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in model.model_fields.items()
        if not field.is_required()
    }


def effective_defaults(catalog: Catalog, entry: Entry[MethodSpec]) -> dict[str, Any]:
    """What a matrix entry that names only the method trains with: the schema's defaults,
    then the method.yaml chain's overrides, then its ties (RandLoRA's alpha = 20 r)."""
    resolved = resolve_method(catalog, MethodEntry(method=entry.name), str(entry.path))
    model = params_model(catalog, entry)
    merged = {**schema_defaults(model), **resolved.params}
    order = {name: i for i, name in enumerate(model.model_fields)}  # the schema's order
    return {key: merged[key] for key in sorted(merged, key=lambda k: order.get(k, len(order)))}


def repeated_defaults_that_differ(catalog: Catalog, entry: Entry[MethodSpec]) -> list[str]:
    """The method.yaml params of a method with its own code whose value is not its
    schema's default (a default written twice that drifted), or that the schema requires."""
    if entry.spec.implementation is None:
        return []  # a `kind:` method's params are overrides of its root's schema
    defaults = schema_defaults(params_model(catalog, entry))
    return [
        f"{entry.name}: {key} is {value!r} in method.yaml but "
        + (f"{defaults[key]!r} in Params" if key in defaults else "required by Params")
        for key, value in entry.spec.params.items()
        if key not in defaults or _plain(value) != _plain(defaults[key])
    ]


def _plain(value: Any) -> Any:
    """Tuples as lists, as YAML writes them."""
    return json.loads(json.dumps(value))


def shown(value: Any) -> str:
    """A default as the Markdown listing writes it: lists in brackets, dicts as JSON."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)
