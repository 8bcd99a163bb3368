"""Module-name patterns, as targets and fused-module keys write them.

A pattern matches a module whose qualified name equals it or ends with `.pattern`;
a pattern starting with `re:` is a regular expression matched against the full name.
"""

from __future__ import annotations

import re


def matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` can match nothing as written (a `re:` that does not compile), or None."""
    if not pattern.startswith("re:"):
        return None
    try:
        re.compile(pattern[3:])
    except re.error as exc:
        return f"{pattern!r} is not a valid regular expression: {exc}"
    return None
