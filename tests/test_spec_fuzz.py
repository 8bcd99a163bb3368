"""No spec file, whatever its bytes, produces a traceback: every way a file can fail to
read, decode or parse is a spec error naming the file (exit 2 from the CLI).

Fuzzed with hypothesis: random bytes, truncations of real specs, other encodings, deep
nesting, huge scalars, alias bombs, and real specs with values swapped for random ones;
through `validate` (in process, well over 500 files) and `run --plugins` (the CLI)."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from suite.errors import SpecError
from suite.paths import CHECKOUT as REPO_ROOT
from tests.support.spec_files import FUZZ, write_spec

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


@FUZZ
@given(data=any_bytes, place=st.sampled_from(PLACES))
def test_validate_never_raises_anything_but_a_spec_error(
    fast_catalog, tmp_path_factory, data, place
):
    from suite.validate import validate_paths

    path = write_spec(tmp_path_factory.mktemp("fz"), place, data)
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
    write_spec(root, place, data)
    db = root / "r.duckdb"
    result = CliRunner().invoke(
        app,
        ["run", "no-such-matrix", "--plugins", str(root), "--db", str(db), "--executor", "local"],
    )
    assert result.exit_code == 2, (result.exit_code, result.output[-2000:])
    assert isinstance(result.exception, SystemExit | None), result.exception
    assert "Traceback" not in result.output
    assert not db.exists()  # nothing is written on a spec error
