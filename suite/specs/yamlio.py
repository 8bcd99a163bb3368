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


# Limits that keep a hostile or broken file from exhausting the process: no spec is near
# them (the largest built-in one is a few KB, 6 levels deep).
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000
MAX_INT_BITS = 1024


def resolve_path(path: Path) -> Path:
    """`path.resolve()`, with a symlink loop (a -> b -> a, or a link to itself) a
    SpecError naming the file: Python 3.11 raises RuntimeError for it, later ones OSError."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        raise SpecError.single(
            str(path), None, "", "cannot resolve the path: a symlink loop"
        ) from exc


def load_yaml(path: Path) -> Any:
    """Load one YAML file safely. Every way it can fail (unreadable, not UTF-8, bad YAML,
    too deep, too large, aliases that expand too far) is a SpecError naming the file."""
    data = _parse_text(path, _read_text(path))
    _check_shape(path, data)
    return data


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError.single(str(path), None, "", f"cannot read file: {reason}") from exc
    if len(raw) > MAX_BYTES:
        raise SpecError.single(
            str(path), None, "", f"file is {len(raw):,} bytes; a spec is at most {MAX_BYTES:,}"
        )
    try:
        return raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is fine
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError.single(
            str(path),
            line,
            "",
            f"not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8",
        ) from exc


def _parse_text(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except RecursionError as exc:
        raise SpecError.single(str(path), None, "", "YAML nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise SpecError.single(str(path), None, "", f"YAML value error: {exc}"[:300]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in str(problem) or "tag" in str(problem):
            problem = f"{problem} (only plain YAML is allowed; tags are refused)"
        raise SpecError.single(str(path), line, "", f"YAML error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise SpecError.single(str(path), None, "", f"YAML error: {exc}"[:300]) from exc


def _check_shape(path: Path, data: Any) -> None:
    """Refuse trees nested deeper than MAX_DEPTH or holding more than MAX_VALUES values
    once aliases are expanded (an alias bomb is tiny on disk, exponential in memory)."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise SpecError.single(
                str(path), getattr(node, "line", None), "", f"nested more than {MAX_DEPTH} levels"
            )
        if (
            isinstance(node, int)
            and not isinstance(node, bool)
            and node.bit_length() > MAX_INT_BITS
        ):
            raise SpecError.single(
                str(path), None, "", f"a number of {node.bit_length():,} bits; no spec needs one"
            )
        if not isinstance(node, dict | list):
            return 1
        if id(node) not in sizes:
            children = node.values() if isinstance(node, dict) else node
            sizes[id(node)] = 1 + sum(size(child, depth + 1) for child in children)
        return sizes[id(node)]

    total = size(data, 0)
    if total > MAX_VALUES:
        raise SpecError.single(
            str(path),
            None,
            "",
            f"holds {total:,} values once aliases expand (at most {MAX_VALUES:,})",
        )


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
