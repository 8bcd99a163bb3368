"""A hash of the source files a method's implementation runs.

Every result row stores it beside the method's `version`, so a row can be traced to the
exact code that produced it, and an implementation edited without a version bump shows
up as the same version with a different source hash.

The files are the implementation's own module, every Python file in its method folder,
and, transitively, the project modules it takes names from (shared machinery under
`suite/methods/`, say); third-party libraries (torch, peft) are recorded by the row's
package versions instead.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from pathlib import Path
from types import ModuleType

from suite.paths import SOURCE_ROOT as REPO_ROOT


def implementation_files(cls: type) -> list[Path]:
    """The project's source files behind `cls`, sorted."""
    module = sys.modules[cls.__module__]
    folder = Path(inspect.getfile(module)).resolve().parent
    files = {p.resolve() for p in folder.glob("*.py")}
    seen: set[str] = set()
    stack = [module]
    while stack:
        current = stack.pop()
        if current.__name__ in seen:
            continue
        seen.add(current.__name__)
        path = _own_file(current, folder)
        if path is None:
            continue
        files.add(path)
        stack.extend(_modules_used_by(current))
    return sorted(files)


def _own_file(module: ModuleType, folder: Path) -> Path | None:
    """The module's file if it belongs to this project or the method's folder."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    inside = (
        (REPO_ROOT / "suite") in path.parents or folder in path.parents or path.parent == folder
    )
    return path if inside else None


def _modules_used_by(module: ModuleType) -> list[ModuleType]:
    found = []
    for value in vars(module).values():
        owner = value if isinstance(value, ModuleType) else inspect.getmodule(value)
        if owner is not None and owner is not module:
            found.append(owner)
    return found


def source_hash(cls: type) -> str:
    """sha256 over the implementation's files (path relative to its folder, and bytes)."""
    digest = hashlib.sha256()
    for path in implementation_files(cls):
        try:
            name = str(path.relative_to(REPO_ROOT))
        except ValueError:
            name = path.name  # a plugin outside the repository
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
