"""Building one built-in method for a method-specific test file, and reaching into it:
the implementation module and the adapter layers of a prepared model."""

from __future__ import annotations

import sys
from types import ModuleType

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.adapters import AdapterLinear
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog
from tests.test_conformance import built


def method_with(name: str, **overrides):
    """The method at its conformance block's params, with `overrides` on top."""
    method, _, _ = built(name)
    return type(method)(
        type(method).Params.model_validate({**method.params.model_dump(), **overrides})
    )


def make(name: str, **params):
    """The method at its spec's defaults, with `params` as a matrix entry would give them."""
    return C.instantiate(resolve_method(catalog(), MethodEntry(method=name, params=params)))


def impl(name: str) -> ModuleType:
    """The implementation module of a built-in method."""
    return sys.modules[type(make(name)).__module__]


def adapters(prepared) -> list[AdapterLinear]:
    return [m for m in prepared.model.modules() if isinstance(m, AdapterLinear)]
