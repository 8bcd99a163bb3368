"""Parse a spec file once into its frozen typed model; errors name file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter, ValidationError

from suite.errors import SpecError, SpecIssue
from suite.specs.yamlio import LineDict, line_of, load_yaml, resolve_path


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


def _short_repr(value: Any) -> str:
    """The value as an error message shows it: at most 200 characters, never a failure."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # e.g. an integer past Python's digit limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


def validation_issues(
    path: Path,
    data: Any,
    exc: ValidationError,
    known: list[str],
    tags: frozenset[str] = frozenset(),
) -> list[SpecIssue]:
    """Map pydantic errors to SpecIssues, with the YAML line and a did-you-mean for bad keys.

    `tags` are a union's member names (a task's type model), which pydantic puts first in
    an error's location; they are not YAML keys."""
    from suite.errors import did_you_mean

    issues = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        loc = loc[1:] if loc and loc[0] in tags else loc
        if err.get("type") == "task_type":  # the union could not pick a member: `type`
            loc = ("type",)
        message = _expected(err)
        if err.get("type") == "extra_forbidden" and loc:
            message += did_you_mean(str(loc[-1]), known)
        elif err.get("type") not in ("missing", "extra_forbidden") and "input" in err:
            message += f" (got {_short_repr(err['input'])})"
        issues.append(SpecIssue(str(path), line_of(data, loc), _field(loc), message))
    return issues


def _members(model: Any) -> list[type[BaseModel]]:
    """A spec model, or the member models of an (annotated) union of them."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [model]
    found = []
    for arg in get_args(model):
        found += [m for m in _members(arg) if m not in found]
    return found


def parse(path: Path, data: Any, model: Any) -> Any:
    """Validate an already loaded YAML tree as `model` (a spec model, or a union of them
    such as TaskSpec)."""
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise SpecError.single(str(path), 1, "", f"expected a mapping at the top level, got {got}")
    members = _members(model)
    try:
        if members == [model]:
            return model.model_validate(dict(data))
        return _adapter(model).validate_python(dict(data))
    except ValidationError as exc:
        known = sorted({f for m in members for f in m.model_fields})
        tags = frozenset(m.__name__ for m in members)
        raise SpecError(validation_issues(path, data, exc, known, tags)) from exc


_ADAPTERS: dict[int, TypeAdapter] = {}


def _adapter(model: Any) -> TypeAdapter:
    if id(model) not in _ADAPTERS:
        _ADAPTERS[id(model)] = TypeAdapter(model)
    return _ADAPTERS[id(model)]


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
    path = resolve_path(path)
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
    base_path = resolve_path(path.parent / target)
    if not base_path.is_file():
        line = data.key_lines.get("include") if isinstance(data, LineDict) else None
        raise SpecError.single(str(path), line, "include", f"included file not found: {target}")
    base = load_with_includes(base_path, (*chain, path))
    if not isinstance(base, dict):
        raise SpecError.single(str(base_path), 1, "", "included file must hold a mapping")
    own = LineDict({k: v for k, v in data.items() if k != "include"})
    own.line, own.key_lines = data.line, data.key_lines
    return _deep_merge(base, own)
