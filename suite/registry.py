"""One generic registry of named specs, and the catalogue of every plugin kind.

Built-in plugins live in the repository (`methods/`, `tasks/`, `hardware_profiles/`,
`posthoc/`, `suite/matrices/`, `suite/models/`); extra plugin folders come from `--plugins DIR`
or the `PEFTBENCH_PLUGINS` environment variable (os.pathsep-separated).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from suite.errors import SpecError, SpecIssue, unknown_name_message
from suite.paths import CHECKOUT, builtin_dirs
from suite.specs.load import load_with_includes, parse
from suite.specs.matrix import MatrixSpec
from suite.specs.method import MethodSpec
from suite.specs.model import ModelPreset
from suite.specs.posthoc import PosthocMethodSpec
from suite.specs.profile import HardwareProfile
from suite.specs.yamlio import line_of, resolve_path
from suite.tasks.types import TaskSpec

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered spec with the file it came from and its raw YAML (for error lines)."""

    spec: T
    path: Path
    raw: Any = None

    @property
    def name(self) -> str:
        return self.spec.name  # type: ignore[attr-defined]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def line(self, *loc: str | int) -> int | None:
        return line_of(self.raw, tuple(loc)) if self.raw is not None else None


@dataclass
class Registry(Generic[T]):
    """Named specs of one kind; duplicate names are an error, unknown ones get a did-you-mean."""

    kind: str
    entries: dict[str, Entry[T]] = field(default_factory=dict)

    def add(self, entry: Entry[T]) -> None:
        if entry.name in self.entries:
            first = self.entries[entry.name].path
            raise SpecError.single(
                str(entry.path),
                entry.line("name"),
                "name",
                f"duplicate {self.kind} name '{entry.name}' (already defined in {first})",
            )
        self.entries[entry.name] = entry

    def get(
        self, name: str, *, file: str = "", line: int | None = None, field: str = ""
    ) -> Entry[T]:
        if name not in self.entries:
            raise SpecError.single(
                file or "<command line>",
                line,
                field,
                unknown_name_message(self.kind, name, self.entries) + PLUGIN_HINT,
            )
        return self.entries[name]

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries[n] for n in self.names())


# (registry attribute, spec model, glob patterns relative to a plugin root)
_LAYOUT: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("methods", MethodSpec, ("methods/*/method.yaml", "*/method.yaml", "method.yaml")),
    ("tasks", TaskSpec, ("tasks/*/task.yaml", "*/task.yaml", "task.yaml")),
    ("models", ModelPreset, ("suite/models/*.yaml", "models/*.yaml")),
    ("profiles", HardwareProfile, ("hardware_profiles/*.yaml",)),
    ("matrices", MatrixSpec, ("suite/matrices/*.yaml", "matrices/*.yaml")),
    ("posthoc", PosthocMethodSpec, ("posthoc/*/posthoc.yaml", "*/posthoc.yaml", "posthoc.yaml")),
)


# Said with every unknown name: the usual cause is a plugin whose folder was not given.
PLUGIN_HINT = " (a plugin? give its folder with --plugins DIR, or in PEFTBENCH_PLUGINS)"


@dataclass
class Catalog:
    """Every plugin the run can see."""

    methods: Registry[MethodSpec] = field(default_factory=lambda: Registry("method"))
    tasks: Registry[TaskSpec] = field(default_factory=lambda: Registry("task"))
    models: Registry[ModelPreset] = field(default_factory=lambda: Registry("model"))
    profiles: Registry[HardwareProfile] = field(default_factory=lambda: Registry("profile"))
    matrices: Registry[MatrixSpec] = field(default_factory=lambda: Registry("matrix"))
    # Merge and compress methods (posthoc/<name>/posthoc.yaml), run by a matrix's stages.
    posthoc: Registry[PosthocMethodSpec] = field(
        default_factory=lambda: Registry("post-hoc method")
    )
    roots: list[Path] = field(default_factory=list)

    @classmethod
    def discover(cls, plugin_dirs: Iterable[Path | str] = (), builtin: bool = True) -> Catalog:
        """Load every built-in spec (suite.paths.builtin_dirs) and those of the extra
        plugin folders (laid out as _LAYOUT says)."""
        roots = [Path(p).resolve() for p in [*plugin_dirs, *env_plugin_dirs()]]
        catalog = cls(roots=([CHECKOUT] if builtin else []) + roots)
        issues: list[SpecIssue] = []
        seen: set[Path] = set()
        sources = _builtin_sources() if builtin else []
        for root in roots:
            if not root.is_dir():
                issues.append(SpecIssue(str(root), None, "", "plugin folder does not exist"))
                continue
            sources += [(attr, model, root, patterns) for attr, model, patterns in _LAYOUT]
        for attr, model, root, patterns in sources:
            try:
                paths = _files(root, patterns, seen)
            except SpecError as exc:
                issues.extend(exc.issues)
                continue
            for path in paths:
                try:
                    catalog._register(attr, model, path)
                except SpecError as exc:
                    issues.extend(exc.issues)
        if issues:
            raise SpecError(issues)
        return catalog

    def _register(self, attr: str, model: type[BaseModel], path: Path) -> None:
        raw = load_with_includes(path) if model is TaskSpec else _load_plain(path)
        spec = parse(path, raw, model)
        getattr(self, attr).add(Entry(spec, path, raw))

    def matrix_from_path_or_name(self, ref: str) -> Entry[MatrixSpec]:
        """A matrix by registered name, or from a YAML file path."""
        path = Path(ref)
        if path.suffix in (".yaml", ".yml") or path.is_file():
            if not path.is_file():
                raise SpecError.single(ref, None, "", "matrix file not found")
            raw = _load_plain(path)
            return Entry(parse(path, raw, MatrixSpec), path.resolve(), raw)
        return self.matrices.get(ref, field="matrix")


# Inside each built-in folder: methods/<name>/method.yaml, tasks/<name>/task.yaml, and a
# YAML per profile, model preset and matrix.
_BUILTIN_PATTERNS = {
    "methods": ("*/method.yaml",),
    "tasks": ("*/task.yaml",),
    "profiles": ("*.yaml",),
    "models": ("*.yaml",),
    "matrices": ("*.yaml",),
    "posthoc": ("*/posthoc.yaml",),
}


def _builtin_sources() -> list[tuple[str, Any, Path, tuple[str, ...]]]:
    folders = builtin_dirs()
    return [(attr, model, folders[attr], _BUILTIN_PATTERNS[attr]) for attr, model, _ in _LAYOUT]


def _load_plain(path: Path) -> Any:
    from suite.specs.yamlio import load_yaml

    return load_yaml(path)


def _listing(folder: Path, pattern: str) -> list[Path]:
    """The entries of `folder` whose names match `pattern`, links that lead nowhere (or
    round in a loop) included: glob would leave those out without a word."""
    try:
        names = sorted(entry.name for entry in os.scandir(folder))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError.single(str(folder), None, "", f"cannot read folder: {reason}") from exc
    return [folder / name for name in names if fnmatch.fnmatchcase(name, pattern)]


def _matches(root: Path, pattern: str) -> list[Path]:
    """`root.glob(pattern)` for patterns of plain folder steps ('*/method.yaml')."""
    paths = [root]
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        paths = [p for folder in paths for p in _listing(folder, part) if last or p.is_dir()]
    return paths


def _files(root: Path, patterns: tuple[str, ...], seen: set[Path]) -> list[Path]:
    """Spec files under `root`; a folder that cannot be read or a link that cannot be
    resolved is a SpecError (never a silent omission)."""
    found = []
    for pattern in patterns:
        for path in _matches(root, pattern):
            if ".venv" in path.parts:
                continue
            resolved = resolve_path(path)
            if resolved not in seen and ".venv" not in resolved.parts:
                seen.add(resolved)
                found.append(resolved)
    return found


PLUGINS_ENV = "PEFTBENCH_PLUGINS"


def env_plugin_dirs() -> list[Path]:
    value = os.environ.get(PLUGINS_ENV, "")
    return [Path(p) for p in value.split(os.pathsep) if p.strip()]
