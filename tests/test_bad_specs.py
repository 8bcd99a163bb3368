"""Malformed specs: each gives a clear message naming file/line/field, exit code 2, and
nothing is written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suite.cli import app

GOOD_MATRIX = """\
name: m
models: [minilm-l6]
methods: [lora]
tasks: [drug-condition]
"""

# (case id, files to write {relative path: text}, command args, expected substrings)
CASES = [
    (
        "yaml-syntax",
        {"m.yaml": "name: m\nmodels: [minilm-l6\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:", "YAML error"],
    ),
    (
        "unknown-field",
        {"m.yaml": GOOD_MATRIX + "seedz: [1]\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:5", "seedz", "unknown field", "did you mean 'seeds'"],
    ),
    (
        "wrong-type",
        {"m.yaml": GOOD_MATRIX + "seeds: one\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:5", "seeds", "valid list"],
    ),
    (
        "wrong-type-budget",
        {"m.yaml": GOOD_MATRIX + "budget: {batch_size: big}\n"},
        ["run", "{d}/m.yaml"],
        ["budget.batch_size", "integer"],
    ),
    (
        "negative-batch",
        {"m.yaml": GOOD_MATRIX + "budget: {batch_size: -4}\n"},
        ["run", "{d}/m.yaml"],
        ["budget.batch_size", "greater than 0"],
    ),
    (
        "encoder-cannot-generate",
        {"m.yaml": GOOD_MATRIX.replace("[drug-condition]", "[drug-condition, gsm8k]")},
        ["run", "{d}/m.yaml"],
        [
            "m.yaml:4",
            "tasks.1",
            "task 'gsm8k' is a generation task",
            "minilm-l6 (encoder)",
            "generation tasks need a causal-lm model",
        ],
    ),
    (
        "vision-model-on-text",
        {"m.yaml": GOOD_MATRIX.replace("[minilm-l6]", "[tiny-vit]")},
        ["validate", "{d}/m.yaml"],
        [
            "m.yaml:4",
            "need an encoder model",
            "m.yaml:2",
            "model 'tiny-vit' (vision) runs image-classification tasks, and this matrix has none",
        ],
    ),
    (
        "unknown-method",
        {"m.yaml": GOOD_MATRIX.replace("[lora]", "[lora2]")},
        ["run", "{d}/m.yaml"],
        ["m.yaml:3", "unknown method 'lora2'; did you mean 'lora'?"],
    ),
    (
        "unknown-task",
        {"m.yaml": GOOD_MATRIX.replace("drug-condition", "drug-conditon")},
        ["run", "{d}/m.yaml"],
        ["unknown task 'drug-conditon'; did you mean 'drug-condition'?"],
    ),
    (
        "unknown-model",
        {"m.yaml": GOOD_MATRIX.replace("minilm-l6", "minilm-l12")},
        ["run", "{d}/m.yaml"],
        ["unknown model 'minilm-l12'; did you mean 'minilm-l6'?"],
    ),
    (
        "unknown-profile",
        {"m.yaml": GOOD_MATRIX + "profile: cpu-locl\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:5", "unknown profile 'cpu-locl'; did you mean 'cpu-local'?"],
    ),
    (
        "empty-matrix",
        {"m.yaml": "name: m\nmodels: []\nmethods: [lora]\ntasks: [drug-condition]\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:2", "models", "at least 1"],
    ),
    ("empty-file", {"m.yaml": ""}, ["run", "{d}/m.yaml"], ["expected a mapping", "empty file"]),
    (
        "python-tag",
        {"m.yaml": "name: !!python/object:os.system {}\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:1", "tags are refused"],
    ),
    (
        "python-apply-tag",
        {"m.yaml": "name: !!python/object/apply:os.system ['true']\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:1", "tags are refused"],
    ),
    (
        "duplicate-key",
        {"m.yaml": GOOD_MATRIX + "models: [minilm-l6]\n"},
        ["run", "{d}/m.yaml"],
        ["m.yaml:5", "duplicate key 'models'"],
    ),
    (
        "negative-rank",
        {
            "m.yaml": GOOD_MATRIX.replace("[lora]", "[lora-neg]"),
            "methods/lora-neg/method.yaml": "name: lora-neg\nkind: lora\nparams:\n  r: -4\n",
        },
        ["run", "{d}/m.yaml", "--plugins", "{d}"],
        ["lora-neg/method.yaml:4", "params.r", "greater than 0"],
    ),
    (
        "unknown-hyperparameter",
        {
            "m.yaml": GOOD_MATRIX.replace("[lora]", "[lora-x]"),
            "methods/lora-x/method.yaml": "name: lora-x\nkind: lora\nparams:\n  rank: 4\n",
        },
        ["run", "{d}/m.yaml", "--plugins", "{d}"],
        ["params.rank", "unknown hyperparameter"],
    ),
    (
        "matrix-param-override-bad",
        {"m.yaml": GOOD_MATRIX.replace("[lora]", "[{method: lora, params: {alpha: nope}}]")},
        ["run", "{d}/m.yaml"],
        ["params.alpha", "valid number"],
    ),
    (
        "unknown-kind",
        {"methods/x/method.yaml": "name: x\nkind: lorra\n"},
        ["validate", "{d}/methods"],
        ["x/method.yaml:2", "unknown method 'lorra'; did you mean 'lora'?"],
    ),
    (
        "kind-and-implementation",
        {"methods/x/method.yaml": "name: x\nkind: lora\nimplementation: impl.py:X\n"},
        ["validate", "{d}/methods"],
        ["x/method.yaml:1", "exactly one of 'implementation'"],
    ),
    (
        "implementation-without-fidelity",
        {"methods/x/method.yaml": "name: x\nimplementation: impl.py:X\n"},
        ["validate", "{d}/methods"],
        ["x/method.yaml:1", "fidelity: reference | paper | reconstructed"],
    ),
    (
        "unknown-fidelity",
        {
            "methods/x/method.yaml": "name: x\nimplementation: impl.py:X\nfidelity: vibes\nversion: 1\n"
        },
        ["validate", "{d}/methods"],
        ["x/method.yaml:3", "fidelity"],
    ),
    (
        "missing-implementation-file",
        {
            "methods/x/method.yaml": "name: x\nimplementation: nothere.py:X\nfidelity: paper\nversion: 1\n"
        },
        ["validate", "{d}/methods"],
        ["x/method.yaml:2", "implementation", "plugin file not found"],
    ),
    (
        "bad-name",
        {"methods/x/method.yaml": "name: My Method\nkind: lora\n"},
        ["validate", "{d}/methods"],
        ["x/method.yaml:1", "name", "lower-case name"],
    ),
    (
        "duplicate-name",
        {"methods/x/method.yaml": "name: lora\nkind: lora\n"},
        ["validate", "{d}/methods"],
        ["duplicate method name 'lora'"],
    ),
    (
        "include-cycle",
        {
            "tasks/a/task.yaml": "include: ../b/task.yaml\nname: a\n",
            "tasks/b/task.yaml": "include: ../a/task.yaml\nname: b\n",
        },
        ["validate", "{d}/tasks"],
        ["include cycle"],
    ),
    (
        "include-missing",
        {"tasks/a/task.yaml": "include: ../zz/task.yaml\nname: a\n"},
        ["validate", "{d}/tasks"],
        ["a/task.yaml:1", "included file not found"],
    ),
    (
        "task-primary-not-declared",
        {
            "tasks/a/task.yaml": textwrap.dedent("""\
        name: a
        data: {loader: files, data_files: {train: t.csv, test: t.csv}}
        text_fields: [text]
        label_field: label
        metrics: [{name: accuracy}]
        primary_metric: f1
        """)
        },
        ["validate", "{d}/tasks"],
        ["primary_metric 'f1' is not among"],
    ),
    (
        "search-space-bounds",
        {
            "methods/x/method.yaml": textwrap.dedent("""\
        name: x
        kind: lora
        search_space:
          lr: {log_uniform: [1.0e-2, 1.0e-4]}
        """)
        },
        ["validate", "{d}/methods"],
        ["search_space.lr", "lower bound"],
    ),
    (
        "profile-fraction-without-opt-in",
        {
            "hardware_profiles/p.yaml": textwrap.dedent("""\
        name: p
        resources: {num_gpus: 0.5}
        """)
        },
        ["validate", "{d}/hardware_profiles"],
        ["p.yaml:1", "allow_fractional_gpu"],
    ),
    (
        "unknown-spec-kind",
        {"stray.yaml": "foo: 1\n"},
        ["validate", "{d}/stray.yaml"],
        ["cannot tell which kind of spec"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_spec(case, tmp_path: Path, monkeypatch):
    _, files, args, expected = case
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    db = tmp_path / "out" / "r.duckdb"
    argv = [a.replace("{d}", str(tmp_path)) for a in args]
    if argv[0] == "run":
        argv += ["--db", str(db)]
    monkeypatch.delenv("PEFTBENCH_PLUGINS", raising=False)
    result = CliRunner().invoke(app, argv)
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    for text in expected:
        assert " ".join(text.split()) in out, f"missing {text!r} in:\n{result.output}"
    assert not db.parent.exists(), "a spec error must write nothing"
