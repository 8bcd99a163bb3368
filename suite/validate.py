"""`peftbench validate`: check every YAML spec under the given paths, recursively.

Each file is parsed as the spec its name or folder says (method.yaml, task.yaml,
posthoc.yaml, hardware_profiles/, matrices/, models/), falling back to its keys. Matrices are also
expanded, and methods' code and hyperparameters checked, against the catalogue plus
the files being validated.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from suite.cells import expand
from suite.checks import check_cells, check_method
from suite.errors import SpecError, SpecIssue
from suite.registry import Catalog, Entry
from suite.resolve import resolve_method
from suite.specs.load import load_with_includes, parse
from suite.specs.matrix import MatrixSpec, MethodEntry
from suite.specs.method import MethodSpec
from suite.specs.model import ModelPreset
from suite.specs.posthoc import PosthocMethodSpec
from suite.specs.profile import HardwareProfile
from suite.specs.reference import ReferenceFile
from suite.specs.yamlio import resolve_path
from suite.tasks.types import TaskSpec

_BY_FOLDER = {
    "hardware_profiles": HardwareProfile,
    "matrices": MatrixSpec,
    "models": ModelPreset,
    "references": ReferenceFile,
}
_BY_NAME = {"method.yaml": MethodSpec, "task.yaml": TaskSpec, "posthoc.yaml": PosthocMethodSpec}
_LABEL = {
    MethodSpec: "method",
    TaskSpec: "task",
    HardwareProfile: "profile",
    MatrixSpec: "matrix",
    ModelPreset: "model",
    PosthocMethodSpec: "posthoc",
    ReferenceFile: "reference",
}


def spec_kind(path: Path, raw) -> type[BaseModel] | None:
    if path.name in _BY_NAME:
        return _BY_NAME[path.name]
    if path.parent.name in _BY_FOLDER:
        return _BY_FOLDER[path.parent.name]
    keys = set(raw) if isinstance(raw, dict) else set()
    if {"models", "methods", "tasks"} <= keys:
        return MatrixSpec
    if {"stage", "implementation"} <= keys:
        return PosthocMethodSpec
    if keys & {"implementation", "kind"}:
        return MethodSpec
    if "text_fields" in keys:
        return TaskSpec
    if "target_modules" in keys:
        return ModelPreset
    if keys & {"resources", "expected"}:
        return HardwareProfile
    return None


def yaml_files(paths: list[Path]) -> list[Path]:
    """The YAML files under each folder (symlinked folders not entered, so no loop), or
    the path itself. A folder that cannot be read is a SpecError, not a silent gap; a
    file that vanishes or cannot be read after the scan fails when it is loaded."""
    found = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue

        def unreadable(exc: OSError) -> None:
            reason = exc.strerror or type(exc).__name__
            raise SpecError.single(str(exc.filename), None, "", f"cannot read folder: {reason}")

        for folder, dirs, files in os.walk(path, onerror=unreadable):
            dirs[:] = sorted(d for d in dirs if d != ".venv")
            found += [Path(folder) / f for f in sorted(files) if f.endswith((".yaml", ".yml"))]
    return found


def validate_paths(paths: list[Path], plugins: list[Path]) -> list[tuple[Path, str]]:
    """Validate; return (path, kind) for each file or raise one SpecError with every problem."""
    issues: list[SpecIssue] = []
    parsed: list[tuple[Path, type[BaseModel], Entry]] = []
    for path in yaml_files(paths):  # raises SpecError for a folder it cannot read
        try:
            raw = load_with_includes(path)
            kind = spec_kind(path, raw)
            if kind is None:
                issues.append(
                    SpecIssue(
                        str(path),
                        1,
                        "",
                        "cannot tell which kind of spec this is "
                        "(name it method.yaml/task.yaml or put it under "
                        "hardware_profiles/, matrices/, models/ or references/)",
                    )
                )
                continue
            entry = Entry(parse(path, raw, kind), resolve_path(path), raw)
            parsed.append((path, kind, entry))
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    catalog = _catalog_with(plugins, parsed)
    for _, kind, entry in parsed:
        issues.extend(_cross_check(catalog, kind, entry))
    if issues:
        raise SpecError(issues)
    return [(path, _LABEL[kind]) for path, kind, _ in parsed]


def _catalog_with(plugins: list[Path], parsed) -> Catalog:
    catalog = Catalog.discover(plugins)
    attr = {
        MethodSpec: "methods",
        TaskSpec: "tasks",
        HardwareProfile: "profiles",
        MatrixSpec: "matrices",
        ModelPreset: "models",
        PosthocMethodSpec: "posthoc",
    }
    for _, kind, entry in parsed:
        if kind not in attr:  # reference numbers are not plugins
            continue
        registry = getattr(catalog, attr[kind])
        known = registry.entries.get(entry.name)
        if known is None:
            registry.add(entry)
        elif known.path != entry.path:
            registry.add(entry)  # raises the duplicate-name error with both paths
    return catalog


def _cross_check(catalog: Catalog, kind, entry: Entry) -> list[SpecIssue]:
    try:
        if kind is MethodSpec:
            method = resolve_method(catalog, MethodEntry(method=entry.name), str(entry.path))
            return check_method(catalog, method)
        if kind is MatrixSpec:
            cells = expand(entry.spec, catalog, entry)
            check_cells(catalog, cells)
            if entry.spec.continual:  # its strategies, its sequence on every model
                from suite.continual.plan import checked_cells

                checked_cells(entry.spec, cells, str(entry.path))
            if entry.spec.federated:  # its aggregation rules
                from suite.federated.plan import check_rules

                check_rules(entry)
            if entry.spec.posthoc:
                from suite.posthoc.plan import check_posthoc

                check_posthoc(catalog, entry)
        if kind is PosthocMethodSpec:
            return _check_posthoc_method(entry)
    except SpecError as exc:
        return exc.issues
    return []


def _check_posthoc_method(entry: Entry) -> list[SpecIssue]:
    """A post-hoc method's implementation imports and its defaults validate."""
    from pydantic import ValidationError

    from suite.plugins import load_object

    line = entry.line("implementation")
    try:
        cls = load_object(entry.spec.implementation, entry.folder)
        cls.Params.model_validate(entry.spec.params)
    except ValidationError as exc:
        return [
            SpecIssue(str(entry.path), entry.line("params"), "params", e["msg"])
            for e in exc.errors()
        ]
    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's problem
        return [SpecIssue(str(entry.path), line, "implementation", f"cannot load: {exc}")]
    return []
