"""Bad input fails at plan time: a matrix whose targets name no module of a model is a
spec error (file:line, exit 2) from `validate` and from `run`'s pre-check, before Ray
starts or anything is stored. The module names come from the preset's model built on
the meta device (nothing is downloaded)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suite.cli import app
from suite.models.loading import module_names
from tests.helpers import catalog

MATRIX = """\
    name: typo
    models: [{model}]
    methods:
      - method: lora
        params: {{targets: {targets}}}
    tasks: [drug-condition]
    seeds: [0]
    profile: cpu-local
    budget: {{epochs: 1, batch_size: 16}}
    """


def matrix(tmp_path: Path, targets: str, model: str = "minilm-l6") -> Path:
    path = tmp_path / "matrices" / "typo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(MATRIX.format(model=model, targets=targets)))
    return path


def test_module_names_come_from_a_meta_model_without_a_download():
    names = module_names(catalog().models.get("llama-pt-1m").spec)
    assert names is not None and "model.layers.0.self_attn.q_proj" in names


@pytest.mark.parametrize("targets", ["attnetion", "[qeury, vlaue]", "re:.*nothing.*"])
def test_validate_refuses_targets_that_match_no_module(tmp_path, targets):
    path = matrix(tmp_path, targets)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:5: params.targets" in result.output
    assert "match no module of model 'minilm-l6'" in result.output
    assert "Traceback" not in result.output
    if targets == "attnetion":
        assert "did you mean 'attention'?" in result.output


def test_run_refuses_a_target_typo_before_ray_or_the_store(tmp_path, monkeypatch):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", no_ray)
    db = tmp_path / "r.duckdb"
    result = CliRunner().invoke(app, ["run", str(matrix(tmp_path, "attnetion")), "--db", str(db)])
    assert result.exit_code == 2, result.output[-2000:]
    assert "params.targets" in result.output and not db.exists()


def test_targets_that_match_still_validate(tmp_path):
    from suite.validate import validate_paths

    for targets in ("attention", "[query, value]", "re:.*attention.self.query"):
        validate_paths([matrix(tmp_path, targets)], [])


def test_an_unreadable_config_leaves_targets_unchecked():
    """A hub preset whose config is not cached offline: checked when the model loads."""
    from suite.specs.model import ModelPreset

    preset = ModelPreset.model_validate(
        {"name": "x", "family": "bert", "architecture": "encoder",
         "source": {"hub": "no-such-org/no-such-model-xyz"},
         "target_modules": {"qv": ["query"]}}
    )  # fmt: skip
    assert module_names(preset) is None
