"""Checks that need a method's code: its implementation imports and its hyperparameters
validate against its Params model. Run before anything is trained or written."""

from __future__ import annotations

from pydantic import ValidationError

from suite.cells import Cell, ResolvedMethod
from suite.errors import SpecError, SpecIssue, did_you_mean
from suite.methods.targets import matches
from suite.models.loading import module_names
from suite.plugins import load_object
from suite.registry import Catalog


def check_method(catalog: Catalog, method: ResolvedMethod) -> list[SpecIssue]:
    entry = catalog.methods.get(method.name)
    root = catalog.methods.get(method.kind)
    try:
        cls = load_object(method.implementation, method.impl_dir)
    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's problem
        return [
            SpecIssue(
                str(root.path),
                root.line("implementation"),
                "implementation",
                f"cannot load {method.implementation!r}: {exc}",
            )
        ]
    params_model = getattr(cls, "Params", None)
    if params_model is None:
        return [
            SpecIssue(
                str(root.path),
                root.line("implementation"),
                "implementation",
                f"{method.implementation!r} has no Params model",
            )
        ]
    try:
        params_model.model_validate(method.params)
    except ValidationError as exc:
        return [_param_issue(entry, method, err) for err in exc.errors()]
    return []


def _param_issue(entry, method: ResolvedMethod, err: dict) -> SpecIssue:
    """The issue at the matrix line that overrode the key, else at the method's YAML."""
    key = str(err["loc"][0]) if err["loc"] else ""
    message = err["msg"].removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        message = "unknown hyperparameter"
    elif "input" in err:
        message += f" (got {err['input']!r})"
    if key in method.override_at:
        file, line = method.override_at[key]
        return SpecIssue(file, line, f"params.{key}", f"{message} (method '{method.name}')")
    line = entry.line("params", key) or entry.line("params")
    return SpecIssue(str(entry.path), line, f"params.{key}", message)


def check_targets(catalog: Catalog, cell: Cell) -> list[SpecIssue]:
    """A method's `targets` must name modules the model has: resolved against the module
    names of the preset's model built on the meta device (nothing is downloaded)."""
    targets = cell.method.params.get("targets")
    if targets is None:
        return []
    names = module_names(cell.model)
    if names is None:  # the config is not available offline: checked when the model loads
        return []
    patterns = cell.model.resolve_targets(targets)
    if any(matches(name, p) for name in names for p in patterns):
        return []
    families = sorted(cell.model.target_modules)
    hint = did_you_mean(targets, families) if isinstance(targets, str) else ""
    message = (
        f"targets {targets!r} match no module of model '{cell.model.name}' (its target "
        f"families: {', '.join(families)}; or module names){hint}"
    )
    method = cell.method
    if "targets" in method.override_at:
        file, line = method.override_at["targets"]
        return [SpecIssue(file, line, "params.targets", f"{message} (method '{method.name}')")]
    entry = catalog.methods.get(method.name)
    line = entry.line("params", "targets") or entry.line("params")
    return [SpecIssue(str(entry.path), line, "params.targets", message)]


def check_cells(catalog: Catalog, cells: list[Cell]) -> None:
    """Raise one SpecError listing every method whose code or hyperparameters are wrong,
    or whose targets name no module of a model it runs on."""
    seen: set[str] = set()
    issues: list[SpecIssue] = []
    for cell in cells:
        key = cell.method.model_dump_json()
        if key not in seen:
            seen.add(key)
            issues.extend(check_method(catalog, cell.method))
    if not issues:  # targets of hyperparameters that validate
        pairs: set[tuple[str, str]] = set()
        for cell in cells:
            key = (cell.model.model_dump_json(), cell.method.model_dump_json())
            if key not in pairs:
                pairs.add(key)
                issues.extend(check_targets(catalog, cell))
    if issues:
        raise SpecError(issues)
