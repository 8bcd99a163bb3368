"""Finding the modules a method adapts, from a preset's family names or explicit patterns
(suite/specs/patterns.py says how a pattern matches a module name)."""

from __future__ import annotations

from torch import nn

from suite.specs.patterns import matches


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
