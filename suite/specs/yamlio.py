"""Safe YAML loading that remembers the line of every mapping key.

Only `yaml.SafeLoader` is used, so tags such as `!!python/object` are refused.
The line table lets validation errors point at `file:line`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from suite.errors import SpecError


class LineDict(dict):
    """A dict that also knows the 1-based line of itself and of each of its keys."""

    line: int | None = None
    key_lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        mapping = LineDict(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {
            str(key_node.value): key_node.start_mark.line + 1 for key_node, _ in node.value
        }
        return mapping


def _reject_duplicate_keys(loader: _LineLoader, node: yaml.MappingNode) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        key = str(key_node.value)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1


def _construct_checked_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    _reject_duplicate_keys(loader, node)
    return loader.construct_mapping(node, deep=True)


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_checked_mapping
)


def load_yaml(path: Path) -> Any:
    """Load one YAML file safely; syntax errors become a SpecError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError.single(str(path), None, "", f"cannot read file: {exc.strerror}") from exc
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in str(problem) or "tag" in str(problem):
            problem = f"{problem} (only plain YAML is allowed; tags are refused)"
        raise SpecError.single(str(path), line, "", f"YAML error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise SpecError.single(str(path), None, "", f"YAML error: {exc}") from exc


def line_of(data: Any, loc: tuple) -> int | None:
    """Best line for a pydantic error location inside the loaded YAML tree."""
    line = getattr(data, "line", None)
    node = data
    for part in loc:
        if isinstance(node, LineDict):
            key = str(part)
            if key in node.key_lines:
                line = node.key_lines[key]
                node = node.get(key)
                continue
            break
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            line = getattr(node, "line", line)
            continue
        break
    return line
