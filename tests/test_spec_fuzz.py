"""No spec file, whatever its bytes, produces a traceback: every way a file can fail to
read, decode or parse is a spec error naming the file (exit 2 from the CLI).

Fuzzed with hypothesis: random bytes, truncations of real specs, other encodings, deep
nesting, huge scalars, alias bombs, and real specs with values swapped for random ones;
through `validate` (in process, well over 500 files) and `run --plugins` (the CLI)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suite.errors import SpecError
from suite.paths import CHECKOUT as REPO_ROOT
from suite.registry import Catalog

REAL_SPECS = sorted(
    p
    for pattern in (
        "methods/*/method.yaml",
        "posthoc/*/posthoc.yaml",
        "tasks/*/task.yaml",
        "suite/matrices/*.yaml",
        "suite/models/*.yaml",
        "hardware_profiles/*.yaml",
    )  # fmt: skip
    for p in REPO_ROOT.glob(pattern)
)
# Where a fuzzed file is placed, so each spec kind's parser sees it.
PLACES = ["methods/fz/method.yaml", "posthoc/fz/posthoc.yaml", "tasks/fz/task.yaml",
          "matrices/fz.yaml", "models/fz.yaml", "hardware_profiles/fz.yaml"]  # fmt: skip
ENCODINGS = ["utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig", "shift_jis", "utf-16-be"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_spec(draw) -> bytes:
    """A real spec with one top-level value replaced by a random one."""
    data = yaml.safe_load(draw(st.sampled_from(REAL_SPECS)).read_text())
    key = draw(st.sampled_from(sorted(data) + ["unknown_key"]))
    data[key] = draw(values)
    return yaml.safe_dump(data, allow_unicode=True).encode()


@st.composite
def truncated_spec(draw) -> bytes:
    raw = draw(st.sampled_from(REAL_SPECS)).read_bytes()
    return raw[: draw(st.integers(0, len(raw)))]


@st.composite
def reencoded_spec(draw) -> bytes:
    text = draw(st.sampled_from(REAL_SPECS)).read_text()
    text = text.replace("name:", "description: é日本 ñ\nname:", 1)
    return text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


@st.composite
def deep_nesting(draw) -> bytes:
    depth = draw(st.integers(50, 20000))
    form = draw(st.sampled_from(["flow-list", "flow-map", "block"]))
    if form == "flow-list":
        return ("name: x\nparams: " + "[" * depth + "]" * depth).encode()
    if form == "flow-map":
        return ("name: x\nparams: " + "{a: " * depth + "1" + "}" * depth).encode()
    return ("name: x\n" + "".join(" " * i + f"k{i}:\n" for i in range(min(depth, 3000)))).encode()


@st.composite
def huge_scalar(draw) -> bytes:
    field = draw(st.sampled_from(["name", "r", "seeds", "lr", "description", "max_length"]))
    digits = draw(st.integers(1000, 200000))
    body = draw(
        st.sampled_from(["9" * digits, "1e" + "9" * 400, "x" * digits, "0x" + "f" * digits])
    )
    return f"name: big\n{field}: {body}\n".encode()


@st.composite
def alias_bomb(draw) -> bytes:
    width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    lines = ["name: bomb", f"a0: &a0 [{', '.join(['x'] * width)}]"]
    for i in range(1, depth):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    lines.append(f"params: {{k: *a{depth - 1}}}")
    return "\n".join(lines).encode()


any_bytes = st.one_of(
    st.binary(max_size=3000),
    truncated_spec(),
    reencoded_spec(),
    deep_nesting(),
    huge_scalar(),
    alias_bomb(),
    mutated_spec(),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
)


# Taken before any test patches Catalog.discover, so the cache never calls the patch.
_REAL_DISCOVER = Catalog.discover


@functools.lru_cache(maxsize=1)
def _catalog() -> Catalog:
    return _REAL_DISCOVER()


@pytest.fixture()
def fast_catalog(monkeypatch):
    """validate discovers the built-in catalogue for every file that parses: reuse one."""
    from suite import validate

    real = validate.Catalog.discover

    def discover(plugins=(), builtin=True):
        if list(plugins) or not builtin:
            return real(plugins, builtin)
        return copy.deepcopy(_catalog())

    monkeypatch.setattr(validate.Catalog, "discover", staticmethod(discover))


def _write(root: Path, place: str, data: bytes) -> Path:
    path = root / place
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],  # fmt: skip
    database=None,
)


@FUZZ
@given(data=any_bytes, place=st.sampled_from(PLACES))
def test_validate_never_raises_anything_but_a_spec_error(
    fast_catalog, tmp_path_factory, data, place
):
    from suite.validate import validate_paths

    path = _write(tmp_path_factory.mktemp("fz"), place, data)
    try:
        validate_paths([path], [])
    except SpecError as exc:
        assert exc.issues and all(issue.file for issue in exc.issues)
        assert any(str(path) in issue.file or "fz" in issue.file for issue in exc.issues), exc


@settings(FUZZ, max_examples=40)
@given(data=any_bytes, place=st.sampled_from(PLACES))
def test_run_with_a_broken_plugin_exits_2_without_a_traceback(tmp_path_factory, data, place):
    from typer.testing import CliRunner

    from suite.cli import app

    root = tmp_path_factory.mktemp("plugins")
    _write(root, place, data)
    db = root / "r.duckdb"
    result = CliRunner().invoke(
        app,
        ["run", "no-such-matrix", "--plugins", str(root), "--db", str(db), "--executor", "local"],
    )
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    assert isinstance(result.exception, SystemExit | None), result.exception
    assert "Traceback" not in result.output
    assert not db.exists()  # nothing is written on a spec error


# --- the file system around the specs: links that loop, folders that cannot be read ----

LOOPS = {
    "self": [("a.yaml", "a.yaml")],
    "pair": [("a.yaml", "b.yaml"), ("b.yaml", "a.yaml")],
    "three": [("a.yaml", "b.yaml"), ("b.yaml", "c.yaml"), ("c.yaml", "a.yaml")],
}


def _loop(folder: Path, links) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, target in links:
        (folder / name).symlink_to(target)


@pytest.mark.parametrize("shape", sorted(LOOPS))
@pytest.mark.parametrize("place", ["matrices", "methods/fz"])
def test_validate_reports_a_symlink_loop_as_a_spec_error(fast_catalog, tmp_path, shape, place):
    from suite.validate import validate_paths

    _loop(tmp_path / place, LOOPS[shape])
    for target in (tmp_path, tmp_path / place / "a.yaml"):
        with pytest.raises(SpecError) as exc:
            validate_paths([target], [])
        assert any(
            "symlink loop" in i.message and i.file.endswith("a.yaml") for i in exc.value.issues
        )


def test_an_include_through_a_symlink_loop_is_a_spec_error(tmp_path):
    from suite.specs.load import load_with_includes

    _loop(tmp_path, LOOPS["pair"])
    (tmp_path / "task.yaml").write_text("include: a.yaml\nname: t\n")
    with pytest.raises(SpecError, match="symlink loop"):
        load_with_includes(tmp_path / "task.yaml")


@pytest.mark.parametrize("shape", sorted(LOOPS))
def test_a_looped_plugin_method_is_an_error_not_an_omission(tmp_path, shape):
    """`list methods --plugins DIR` with methods/<name>/method.yaml a loop: exit 2."""
    from typer.testing import CliRunner

    from suite.cli import app

    folder = tmp_path / "methods" / "looped"
    links = [(n.replace("a.yaml", "method.yaml"), t.replace("a.yaml", "method.yaml"))
             for n, t in LOOPS[shape]]  # fmt: skip
    _loop(folder, links)
    result = CliRunner().invoke(app, ["list", "methods", "--plugins", str(tmp_path)])
    assert result.exit_code == 2, result.output[-2000:]
    assert "symlink loop" in result.output and "looped" in result.output
    assert "Traceback" not in result.output


def test_a_plugin_folder_that_cannot_be_read_is_an_error(tmp_path, monkeypatch):
    import os

    (tmp_path / "methods" / "m").mkdir(parents=True)
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("methods"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SpecError, match="cannot read folder: Permission denied"):
        Catalog.discover([tmp_path], builtin=False)


def test_validate_on_a_folder_that_cannot_be_read_is_a_spec_error(tmp_path, monkeypatch):
    import os

    from suite.validate import validate_paths

    (tmp_path / "matrices").mkdir()
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("matrices"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SpecError, match="cannot read folder: Permission denied"):
        validate_paths([tmp_path], [])


def test_a_file_that_vanishes_during_the_scan_is_a_spec_error(fast_catalog, tmp_path, monkeypatch):
    from suite import validate

    _write(tmp_path, "matrices/gone.yaml", b"name: gone\n")
    real = validate.yaml_files

    def scan_then_delete(paths):
        found = real(paths)
        for path in found:
            path.unlink()
        return found

    monkeypatch.setattr(validate, "yaml_files", scan_then_delete)
    with pytest.raises(SpecError) as exc:
        validate.validate_paths([tmp_path], [])
    assert any("cannot read file" in i.message and "gone.yaml" in i.file for i in exc.value.issues)


# --- matrices whose specs parse but do not fit the model: target typos and -------------
# --- shape-impossible hyperparameters, caught at plan time (suite/checks.py) ----------

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
    for entry in _catalog().methods:
        method = resolve_method(_catalog(), MethodEntry(method=entry.name), "fuzz")
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

    path = _write(tmp_path_factory.mktemp("fz"), "matrices/fz.yaml", data)
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
    resolved = resolve_method(_catalog(), MethodEntry(method=method), "fuzz")
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
    path = _write(root, "matrices/fz.yaml", yaml.safe_dump(data).encode())
    db = root / "r.duckdb"
    result = CliRunner().invoke(app, ["run", str(path), "--db", str(db), "--executor", "local"])
    assert result.exit_code == 2, (case, result.output[-2000:])
    assert f"{path}:" in result.output and f": params.{next(iter(params))}" in result.output
    assert "Traceback" not in result.output and not db.exists()
