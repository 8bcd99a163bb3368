"""Finding the modules a method adapts, from a preset's family names or explicit patterns.

A pattern matches a module whose qualified name equals it or ends with `.pattern`;
a pattern starting with `re:` is a regular expression matched against the full name.
"""

from __future__ import annotations

import re

from torch import nn


def matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return name == pattern or name.endswith("." + pattern)


def find_targets(
    root: nn.Module, patterns: list[str], types: tuple[type, ...] = (nn.Linear,)
) -> list[tuple[str, nn.Module]]:
    """Named modules of `types` under `root` matching any pattern, in module order."""
    found = [
        (name, module)
        for name, module in root.named_modules()
        if isinstance(module, types) and any(matches(name, p) for p in patterns)
    ]
    if not found:
        raise ValueError(f"no module matches the target patterns {patterns}")
    return found


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Swap the submodule at dotted `name` for `new`."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
