"""Matrices whose specs parse but do not fit the model, fuzzed with hypothesis: target typos
and shape-impossible hyperparameters are spec errors caught at plan time
(suite/checks.py), before Ray or the store."""

from __future__ import annotations

import functools

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from suite.errors import SpecError
from tests.support.spec_files import FUZZ, builtin_catalog, write_spec

# Presets whose model builds from its config offline (so the plan checks their shapes),
# with a task each can run.
FIT_MODELS = {"minilm-l6": "drug-condition", "tiny-llama": "piqa"}
FAMILIES = ["qv", "attention", "mlp", "all-linear"]


@functools.lru_cache(maxsize=1)
def _targeted_params() -> dict[str, dict]:
    """method -> its Params fields (name -> annotation), for methods that take targets."""
    from suite.cells import resolve_method
    from suite.plugins import load_object
    from suite.specs.matrix import MethodEntry

    out = {}
    for entry in builtin_catalog().methods:
        method = resolve_method(builtin_catalog(), MethodEntry(method=entry.name), "fuzz")
        fields = load_object(method.implementation, method.impl_dir).Params.model_fields
        if entry.spec.status != "test-only" and "targets" in fields:
            out[entry.name] = sorted(set(fields) - {"targets"})
    return out


@st.composite
def target_typo(draw) -> str | list[str]:
    word = draw(st.sampled_from(FAMILIES + ["query", "value", "q_proj", "down_proj"]))
    i = draw(st.integers(0, len(word)))
    edit = draw(st.sampled_from(["insert", "delete", "swap", "replace"]))
    letter = draw(st.sampled_from("aeiouqxz._"))
    if edit == "insert":
        word = word[:i] + letter + word[i:]
    elif edit == "delete":
        word = word[:i] + word[i + 1 :]
    elif edit == "swap" and i < len(word) - 1:
        word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    else:
        word = word[:i] + letter + word[i + 1 :]
    return draw(st.sampled_from([word, [word], [word, "value"], "re:" + word]))


hyperparameter_values = st.one_of(
    st.integers(-3, 2**70),
    st.sampled_from([0, 1, 2, 3, 5, 7, 384, 385, 10**6]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 1.5, -0.1, 1e-12]),
)


@st.composite
def misfit_matrix(draw) -> bytes:
    model = draw(st.sampled_from(sorted(FIT_MODELS)))
    methods = _targeted_params()
    method = draw(st.sampled_from(sorted(methods)))
    params: dict = {}
    if draw(st.booleans()):
        params["targets"] = draw(
            target_typo() | st.sampled_from(FAMILIES) | st.text(max_size=12)
            | st.lists(st.text(max_size=8), max_size=3) | st.text(max_size=8).map("re:".__add__)
        )  # fmt: skip
    if methods[method]:
        for key in draw(st.lists(st.sampled_from(methods[method]), max_size=2)):
            params[key] = draw(hyperparameter_values)
    data = {
        "name": "fz", "models": [model], "methods": [{"method": method, "params": params}],
        "tasks": [FIT_MODELS[model]], "seeds": [0], "profile": "cpu-local",
        "budget": {"epochs": 1, "batch_size": 16},
    }  # fmt: skip
    return yaml.safe_dump(data, allow_unicode=True).encode()


@settings(FUZZ, max_examples=150)
@given(data=misfit_matrix())
def test_targets_and_hyperparameters_that_do_not_fit_are_spec_errors(
    fast_catalog, tmp_path_factory, data
):
    from suite.validate import validate_paths

    path = write_spec(tmp_path_factory.mktemp("fz"), "matrices/fz.yaml", data)
    try:
        validate_paths([path], [])
    except SpecError as exc:
        assert exc.issues and all(issue.file and issue.message for issue in exc.issues)


@st.composite
def certain_misfit(draw) -> tuple[str, dict]:
    """A method and hyperparameters that cannot fit: targets naming nothing, or a rank
    field of 10^9."""
    from suite.cells import resolve_method
    from suite.plugins import load_object
    from suite.specs.matrix import MethodEntry

    method = draw(st.sampled_from(sorted(_targeted_params())))
    resolved = resolve_method(builtin_catalog(), MethodEntry(method=method), "fuzz")
    ranks = load_object(resolved.implementation, resolved.impl_dir).Params.rank_fields
    if ranks and draw(st.booleans()):
        return method, {draw(st.sampled_from(ranks)): 10**9}
    typo = draw(target_typo())
    return method, {
        "targets": [t + "zz9" for t in typo] if isinstance(typo, list) else typo + "zz9"
    }


@settings(FUZZ, max_examples=12)
@given(case=certain_misfit())
def test_run_refuses_a_misfit_before_ray_or_the_store(tmp_path_factory, monkeypatch, case):
    import ray
    from typer.testing import CliRunner

    from suite.cli import app

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", no_ray)
    method, params = case
    root = tmp_path_factory.mktemp("misfit")
    data = {
        "name": "fz", "models": ["minilm-l6"], "methods": [{"method": method, "params": params}],
        "tasks": ["drug-condition"], "seeds": [0], "profile": "cpu-local",
        "budget": {"epochs": 1, "batch_size": 16},
    }  # fmt: skip
    path = write_spec(root, "matrices/fz.yaml", yaml.safe_dump(data).encode())
    db = root / "r.duckdb"
    result = CliRunner().invoke(app, ["run", str(path), "--db", str(db), "--executor", "local"])
    assert result.exit_code == 2, (case, result.output[-2000:])
    assert f"{path}:" in result.output and f": params.{next(iter(params))}" in result.output
    assert "Traceback" not in result.output and not db.exists()
