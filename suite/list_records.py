"""`peftbench list KIND` as typed records: snake_case keys, booleans, numbers, lists and
null, full descriptions (docs/cli.md documents each kind's fields). The terminal table
is drawn from the same records (suite/listing.py)."""

from __future__ import annotations

from typing import Any

from suite.registry import Catalog


def list_records(catalog: Catalog, kind: str) -> list[dict[str, Any]]:
    """One record per registered spec of `kind`, in name order."""
    row = {
        "methods": _method,
        "tasks": _task,
        "models": _model,
        "profiles": _profile,
        "matrices": _matrix,
        "posthoc": _posthoc,
    }[kind]
    return [row(catalog, e) for e in getattr(catalog, kind)]


def _method(catalog: Catalog, e) -> dict[str, Any]:
    from suite.cells import implementation_chain

    chain = implementation_chain(catalog, e)

    def first(field: str):
        return next(
            (getattr(x.spec, field) for x in chain if getattr(x.spec, field) is not None), None
        )

    citation = first("citation")
    return {
        "name": e.name,
        "family": e.spec.family,
        "kind": e.spec.kind,
        "fidelity": first("fidelity"),
        "version": 1 + sum((x.spec.version or 1) - 1 for x in chain),
        "mergeable": first("mergeable"),
        "citation": citation.short() if citation else None,
        "size_params": list(first("size_params") or []),
        "defaults": _defaults(catalog, e),
        "description": e.spec.description,
    }


def _defaults(catalog: Catalog, e) -> dict[str, Any] | None:
    """Every hyperparameter's default (suite/method_defaults.py); null where the method's
    code does not import (`peftbench validate` says why)."""
    from suite.method_defaults import effective_defaults

    try:
        return effective_defaults(catalog, e)
    except Exception:  # noqa: BLE001 - a broken plugin is validate's report, not list's
        return None


def _posthoc(catalog: Catalog, e) -> dict[str, Any]:
    s = e.spec
    return {
        "name": e.name,
        "stage": s.stage,
        "family": s.family,
        "fidelity": s.fidelity,
        "version": s.version,
        "requires": s.requires,
        "citation": s.citation.short() if s.citation else None,
        "description": s.description,
    }


def _task(catalog: Catalog, e) -> dict[str, Any]:
    s = e.spec
    return {
        "name": e.name,
        "type": s.type,
        "primary_metric": s.primary_metric,
        "metrics": [m.name for m in s.metrics],
        "baseline": s.baseline,
        "description": s.description,
    }


def _model(catalog: Catalog, e) -> dict[str, Any]:
    s = e.spec
    kind = next(k for k in ("hub", "path", "package", "config") if getattr(s.source, k))
    where = s.source.config.get("model_type") if kind == "config" else getattr(s.source, kind)
    return {
        "name": e.name,
        "family": s.family,
        "architecture": s.architecture,
        "source_kind": kind,
        "source": where,
        "pooling": s.pooling,
        "target_families": list(s.target_modules),
        "description": s.description,
    }


def _profile(catalog: Catalog, e) -> dict[str, Any]:
    r, expected = e.spec.resources, e.spec.expected
    return {
        "name": e.name,
        "cpus": r.num_cpus,
        "gpus": r.num_gpus,
        "expected_device": expected.name or expected.type,
        "description": e.spec.description,
    }


def _matrix(catalog: Catalog, e) -> dict[str, Any]:
    s = e.spec
    return {
        "name": e.name,
        "models": list(s.models),
        "methods": [x.display for x in s.entries()],
        "tasks": list(s.tasks),
        "seeds": list(s.seeds),
        "profile": s.profile,
        "description": s.description,
    }
