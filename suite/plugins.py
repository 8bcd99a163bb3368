"""Lazy loading of plugin implementations named as `module:attr` or `file.py:attr`."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def load_object(ref: str, base_dir: Path | str | None = None) -> Any:
    """Import the object a plugin reference names.

    `file.py:Attr` is resolved relative to `base_dir` (the folder of the YAML that named
    it), so a user's method folder outside the repository works like a built-in one.
    """
    module_ref, _, attr = ref.rpartition(":")
    if not module_ref or not attr:
        raise ImportError(
            f"plugin reference {ref!r} must look like 'module:attr' or 'file.py:attr'"
        )
    module = (
        _import_file(Path(base_dir or "."), module_ref)
        if module_ref.endswith(".py")
        else (importlib.import_module(module_ref))
    )
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise ImportError(f"{module_ref} has no attribute {attr!r}") from exc


def sibling_names(anchor: str, file: str, *names: str) -> tuple[Any, ...]:
    """The objects `names` of `file`, a module beside `anchor` (a plugin's `__file__`):
    how a plugin's impl.py takes the maths it keeps in its own folder."""
    folder = Path(anchor).resolve().parent
    return tuple(load_object(f"{file}:{name}", folder) for name in names)


def _import_file(base_dir: Path, relative: str) -> Any:
    path = (base_dir / relative).resolve()
    if not path.is_file():
        raise ImportError(f"plugin file not found: {path}")
    # A stable, unique module name per file, so two plugins' impl.py never collide.
    name = "peftbench_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
