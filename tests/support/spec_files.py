"""Spec files for the fuzz and file-system tests (tests/test_spec_*.py): writing a file's
bytes where a spec kind's parser reads them, the built-in catalogue discovered once, and
the hypothesis settings the fuzz tests share."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from hypothesis import HealthCheck, settings

from suite.registry import Catalog

# Taken before any test patches Catalog.discover, so the cache never calls the patch.
_REAL_DISCOVER = Catalog.discover


@functools.lru_cache(maxsize=1)
def builtin_catalog() -> Catalog:
    return _REAL_DISCOVER()


def reuse_builtin_catalog(monkeypatch) -> None:
    """validate discovers the built-in catalogue for every file that parses: reuse one
    (the `fast_catalog` fixture in tests/conftest.py)."""
    from suite import validate

    real = validate.Catalog.discover

    def discover(plugins=(), builtin=True):
        if list(plugins) or not builtin:
            return real(plugins, builtin)
        return copy.deepcopy(builtin_catalog())

    monkeypatch.setattr(validate.Catalog, "discover", staticmethod(discover))


def write_spec(root: Path, place: str, data: bytes) -> Path:
    path = root / place
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],  # fmt: skip
    database=None,
)
