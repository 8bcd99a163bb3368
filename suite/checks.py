"""Checks that need a method's code: its implementation imports and its hyperparameters
validate against its Params model. Run before anything is trained or written."""

from __future__ import annotations

from pydantic import ValidationError

from suite.cells import Cell, ResolvedMethod
from suite.errors import SpecError, SpecIssue, did_you_mean
from suite.methods.fused import linears_after_split, split_plan, target_keys, target_patterns
from suite.models.loading import model_layout
from suite.models.storage import DENSE_STORAGES
from suite.plugins import load_object
from suite.registry import Catalog
from suite.specs.patterns import matches, pattern_error


def check_method(catalog: Catalog, method: ResolvedMethod) -> list[SpecIssue]:
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
        return [_param_issue(catalog, method, err) for err in exc.errors()]
    return []


def _param_issue(catalog: Catalog, method: ResolvedMethod, err: dict) -> SpecIssue:
    """A validation error of hyperparameter `err['loc'][0]`, where it was set."""
    key = str(err["loc"][0]) if err["loc"] else ""
    message = err["msg"].removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        message = "unknown hyperparameter"
    elif "input" in err:
        message += f" (got {err['input']!r})"
    if not key and method.override_at:  # a rule across fields: at the matrix that set one
        key = next(iter(method.override_at))
    return _at(catalog, method, key, message)


def check_targets(catalog: Catalog, cell: Cell) -> list[SpecIssue]:
    """A method must run on the model, its targets name modules the model has (a slice of
    a fused projection only where it can be adapted), and its hyperparameters fit the
    shapes of the weights they select. Checked against the preset's model built on the
    meta device (nothing is downloaded)."""
    cls = load_object(cell.method.implementation, cell.method.impl_dir)
    model_issue = getattr(cls, "model_issue", None)
    if why := model_issue and model_issue(cell.model):
        entry = catalog.methods.get(cell.method.kind)
        where = (str(entry.path), entry.line("implementation"))
        return [SpecIssue(*where, "implementation", f"{why} (model '{cell.model.name}')")]
    params = cell.method.params
    issues = [
        _at(catalog, cell.method, key, why)
        for key in target_keys(params)
        for p in cell.model.resolve_targets(params[key])
        if (why := pattern_error(p))
    ]
    layout = model_layout(cell.model)
    if issues or layout is None:  # no offline config: checked when the model loads
        return issues
    for key in target_keys(params):
        patterns = cell.model.resolve_targets(params[key])
        if not any(matches(name, p) for name in layout.names for p in patterns):
            issues.append(_at(catalog, cell.method, key, _no_match(cell, params[key])))
    try:
        plan = split_plan(layout.linears, cell.model, target_patterns(params, cell.model))
    except ValueError as exc:  # the preset's parts do not fit its module
        entry = catalog.models.get(cell.model.name)
        return [SpecIssue(str(entry.path), entry.line("fused_modules"), "fused_modules", str(exc))]
    if issues or (plan and (issues := _slice_issues(catalog, cell, cls, next(iter(plan))))):
        return issues
    if "targets" not in target_keys(params):
        return []
    patterns = cell.model.resolve_targets(params["targets"])
    linears = linears_after_split(layout.linears, plan)
    shapes = [s for name, s in linears.items() if any(matches(name, p) for p in patterns)]
    if not shapes:  # targets that are not linears (an adapter's sublayers)
        return []
    found = cls.Params.model_validate(params).shape_issues(shapes)
    return [
        _at(catalog, cell.method, key, f"{why} of model '{cell.model.name}'")
        for key, why in found.items()
    ]


def _slice_issues(catalog: Catalog, cell: Cell, cls: type, fused: str) -> list[SpecIssue]:
    """A slice of the fused module `fused` is targeted: the method and the base must allow it."""
    if not getattr(cls, "adapts_slices", True):
        why = (
            f"method '{cell.method.kind}' cannot adapt a slice of a fused projection "
            f"({fused}); target the whole module"
        )
    elif cell.base_storage not in (None, *DENSE_STORAGES):
        why = (
            f"a slice of a fused projection ({fused}) needs a dense base; the "
            f"{cell.base_storage} base stores it compressed: target the whole module"
        )
    else:
        return []
    return [_at(catalog, cell.method, "targets", why)]


def _no_match(cell: Cell, targets) -> str:
    families = sorted(cell.model.target_modules)
    hint = did_you_mean(targets, families) if isinstance(targets, str) else ""
    return (
        f"targets {targets!r} match no module of model '{cell.model.name}' (its target "
        f"families: {', '.join(families)}; or module names){hint}"
    )


def _at(catalog: Catalog, method: ResolvedMethod, key: str, message: str) -> SpecIssue:
    """The issue at the matrix line that set hyperparameter `key`, else at the method's YAML."""
    if key in method.override_at:
        file, line = method.override_at[key]
        return SpecIssue(file, line, f"params.{key}", f"{message} (method '{method.name}')")
    entry = catalog.methods.get(method.name)
    line = entry.line("params", key) or entry.line("params")
    return SpecIssue(str(entry.path), line, f"params.{key}", message)


def check_cells(catalog: Catalog, cells: list[Cell]) -> None:
    """Raise one SpecError listing every method whose code or hyperparameters are wrong,
    or whose targets or hyperparameters do not fit a model it runs on."""
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
