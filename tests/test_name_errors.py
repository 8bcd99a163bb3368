"""Unknown names in a matrix: every one is reported (not only the first), each with a
suggestion of its own kind (a variant's base method before a closer-spelled family
name), and a hint that a plugin's folder is given with --plugins / PEFTBENCH_PLUGINS."""

from __future__ import annotations

from typer.testing import CliRunner

from suite.cli import app
from suite.errors import did_you_mean


def test_every_unknown_name_is_reported_with_the_plugins_hint(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: m\nmodels: [minilm-l12]\nmethods: [lora2, head, lora-r4-attn]\n"
        "tasks: [drug-conditon]\n"
    )
    result = CliRunner().invoke(app, ["validate", str(matrix)])
    out = result.output
    assert result.exit_code == 2, out
    assert "4 problem(s)" in out, out
    for expected in (
        "unknown model 'minilm-l12'; did you mean 'minilm-l6'?",
        "unknown method 'lora2'; did you mean 'lora'?",
        "unknown method 'lora-r4-attn'; did you mean 'lora'?",
        "unknown task 'drug-conditon'; did you mean 'drug-condition'?",
    ):
        assert expected in out, out
    assert out.count("--plugins DIR") == 4 and "PEFTBENCH_PLUGINS" in out


def test_a_variant_name_suggests_its_base_method():
    known = ["lora", "low-rank", "loram", "head"]
    assert did_you_mean("lora-r4-attn", known) == "; did you mean 'lora'?"
    assert did_you_mean("loram_x", known) == "; did you mean 'loram'?"
    assert did_you_mean("lorra", known) == "; did you mean 'lora'?"
    assert did_you_mean("zzz", known) == ""
