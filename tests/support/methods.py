"""Building one built-in method for a method-specific test file."""

from __future__ import annotations

from tests.test_conformance import built


def method_with(name: str, **overrides):
    """The method at its conformance block's params, with `overrides` on top."""
    method, _, _ = built(name)
    return type(method)(
        type(method).Params.model_validate({**method.params.model_dump(), **overrides})
    )
