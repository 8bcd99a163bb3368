"""Parse a spec file once into its frozen typed model; errors name file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from suite.errors import SpecError, SpecIssue
from suite.specs.yamlio import LineDict, line_of, load_yaml

M = TypeVar("M", bound=BaseModel)


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def _expected(err: dict) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = err.get("msg", "invalid value")
    return msg.removeprefix("Value error, ")


def validation_issues(
    path: Path, data: Any, exc: ValidationError, known: list[str]
) -> list[SpecIssue]:
    """Map pydantic errors to SpecIssues, with the YAML line and a did-you-mean for bad keys."""
    from suite.errors import did_you_mean

    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        message = _expected(err)
        if err.get("type") == "extra_forbidden" and loc:
            message += did_you_mean(str(loc[-1]), known)
        elif err.get("type") not in ("missing", "extra_forbidden") and "input" in err:
            message += f" (got {err['input']!r})"[:200]
        issues.append(SpecIssue(str(path), line_of(data, loc), _field(loc), message))
    return issues


def parse(path: Path, data: Any, model: type[M]) -> M:
    """Validate an already loaded YAML tree as `model`."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise SpecError.single(str(path), 1, "", f"expected a mapping at the top level, got {got}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        known = list(model.model_fields)
        raise SpecError(validation_issues(path, data, exc, known)) from exc


def load_spec(path: Path, model: type[M]) -> M:
    """Load and validate one YAML file as `model`."""
    return parse(path, load_yaml(path), model)


def _deep_merge(base: dict, override: dict) -> LineDict:
    merged = LineDict(base)
    merged.line = getattr(override, "line", None)
    merged.key_lines = {**getattr(base, "key_lines", {}), **getattr(override, "key_lines", {})}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _deep_merge(base[key], value)
        else:
            merged[key] = value
    return merged


def load_with_includes(path: Path, chain: tuple[Path, ...] = ()) -> Any:
    """Load a YAML file whose `include:` names another file (relative to it) to extend."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise SpecError.single(str(path), None, "include", f"include cycle: {cycle}")
    data = load_yaml(path)
    if not isinstance(data, dict) or "include" not in data:
        return data
    target = data["include"]
    if not isinstance(target, str):
        line = data.key_lines.get("include") if isinstance(data, LineDict) else None
        raise SpecError.single(str(path), line, "include", "expected a relative file path")
    base_path = (path.parent / target).resolve()
    if not base_path.is_file():
        line = data.key_lines.get("include") if isinstance(data, LineDict) else None
        raise SpecError.single(str(path), line, "include", f"included file not found: {target}")
    base = load_with_includes(base_path, (*chain, path))
    if not isinstance(base, dict):
        raise SpecError.single(str(base_path), 1, "", "included file must hold a mapping")
    own = LineDict({k: v for k, v in data.items() if k != "include"})
    own.line, own.key_lines = data.line, data.key_lines
    return _deep_merge(base, own)
