"""Shape-impossible hyperparameters fail at plan time: a method's Params check the
(d_out, d_in) of the weights its targets select, from the preset's model built on the
meta device (`MethodParams.shape_issues`), and a failure is a spec error at file:line
with exit 2 from `validate` and from `run`'s pre-check, before Ray or the store. Slices
of fused projections are refused there for a method that cannot adapt them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suite.cli import app
from suite.plugins import load_object

MATRIX = """\
    name: shapes
    models: [{model}]
    methods:
      - method: {method}
        params: {params}
    tasks: [{task}]
    seeds: [0]
    profile: cpu-local
    budget: {{epochs: 1, batch_size: 16}}
    """


def matrix(tmp_path: Path, method: str, params: str, model="minilm-l6", task="drug-condition"):
    path = tmp_path / "matrices" / "shapes.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = MATRIX.format(model=model, method=method, params=params, task=task)
    path.write_text(textwrap.dedent(text))
    return path


def validate(*args: str):
    return CliRunner().invoke(app, ["validate", *args])


# minilm-l6: hidden 384, intermediate 1536; qv targets 384 x 384 weights.
@pytest.mark.parametrize(
    ("method", "params", "field", "message"),
    [
        ("lora", "{r: 512}", "r", "r = 512 exceeds min(d_out, d_in) = 384"),
        ("pissa", "{r: 400}", "r", "r = 400 exceeds min(d_out, d_in) = 384"),
        ("adalora", "{init_r: 500, target_r: 8}", "init_r", "init_r = 500 exceeds"),
        ("galore", "{rank: 1000, update_proj_gap: 10}", "rank", "rank = 1000 exceeds"),
        ("block-lora", "{blocks: 5}", "blocks", "blocks = 5 does not divide d_in = 384"),
        ("fourierft", "{n_frequency: 200000}", "n_frequency", "exceeds the 384 x 384 spectrum"),
        ("shira", "{r: 200}", "r", "sparse budget 153600 does not fit a 384x384 matrix"),
        ("mos", "{shards: 5}", "shards", "is not divisible into 5 shards"),
        ("comp-lora", "{k: 384}", "k", "k = 384 leaves no complement"),
        ("spiel", "{num_tunable_weights: 99999999}", "num_tunable_weights", "exceeds the"),
        ("sketch-to-adapt", "{gpr: 5}", "gpr", "not divisible by 2 x gpr (5)"),
    ],
)
def test_shape_impossible_hyperparameters_are_spec_errors(tmp_path, method, params, field, message):
    path = matrix(tmp_path, method, params)
    result = validate(str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}:5: params.{field}" in result.output
    assert message in " ".join(result.output.split()), result.output
    assert "model 'minilm-l6'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("lt-sft", "{density: 1.5}", "density"),
        ("spiel", "{density: 0}", "density"),
        ("shira", "{density: -0.1}", "density"),
        ("sltrain", "{delta: 1.0}", "delta"),
        ("snell", "{sparsity: 1.0}", "sparsity"),
        ("snella", "{q: 7, kernels: 2}", "kernels"),  # q splits evenly across the kernels
    ],
)
def test_densities_outside_the_unit_interval_are_spec_errors(tmp_path, method, params, field):
    path = matrix(tmp_path, method, params)
    result = validate(str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}:5: params.{field}" in result.output and "Traceback" not in result.output


def test_hyperparameters_that_fit_still_validate(tmp_path):
    from suite.validate import validate_paths

    for method, params in [("lora", "{r: 384}"), ("block-lora", "{blocks: 6}"),
                           ("fourierft", "{n_frequency: 147456}"), ("mos", "{shards: 4}")]:  # fmt: skip
        validate_paths([matrix(tmp_path, method, params)], [])


def test_run_refuses_a_shape_impossible_rank_before_ray_or_the_store(tmp_path, monkeypatch):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", no_ray)
    db = tmp_path / "r.duckdb"
    path = matrix(tmp_path, "lora", "{r: 4096}")
    result = CliRunner().invoke(app, ["run", str(path), "--db", str(db)])
    assert result.exit_code == 2, result.output[-2000:]
    assert "params.r" in result.output and not db.exists()


def test_shape_issues_units():
    lora = load_object("impl.py:LoRA", "methods/lora").Params
    assert lora(r=8).shape_issues([(16, 32), (64, 8)]) == {}
    assert lora(r=9).shape_issues([(16, 32), (64, 8)]) == {
        "r": "r = 9 exceeds min(d_out, d_in) = 8 of a targeted 64 x 8 weight"
    }
    hydra = load_object("impl.py:Hydra", "methods/hydra").Params
    assert set(hydra(r_par=40, r_seq=40).shape_issues([(32, 32)])) == {"r_par", "r_seq"}
    svfit = load_object("impl.py:SVFit", "methods/svfit").Params
    assert svfit().shape_issues([(4, 4)]) == {}  # r unset: the energy rule picks it


GPT2_PLUGIN = {
    "models/tiny-gpt2.yaml": """\
        name: tiny-gpt2
        family: gpt2
        architecture: causal-lm
        source: {config: {model_type: gpt2, n_embd: 32, n_layer: 2, n_head: 4, vocab_size: 100}}
        pooling: last
        target_modules:
          qv: [attn.c_attn.q, attn.c_attn.v]
          attention: [attn.c_attn, attn.c_proj]
        fused_modules:
          attn.c_attn: [q, k, v]
        """,
    "methods/whole-only/method.yaml": """\
        name: whole-only
        family: test
        implementation: impl.py:WholeOnly
        status: test-only
        fidelity: reconstructed
        version: 1
        params: {r: 4}
        """,
    "methods/whole-only/impl.py": """\
        from pathlib import Path

        import suite
        from suite.plugins import load_object

        LoRA = load_object("impl.py:LoRA", Path(suite.__file__).parent.parent / "methods" / "lora")


        class WholeOnly(LoRA):
            adapts_slices = False
        """,
}


def gpt2_plugin(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    for name, text in GPT2_PLUGIN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


@pytest.mark.parametrize(
    ("method", "targets", "exit_code", "message"),
    [
        ("whole-only", "qv", 2, "method 'whole-only' cannot adapt a slice of a fused projection"),
        ("whole-only", "attention", 0, ""),
        ("lora", "qv", 0, ""),
        ("lora", "[attn.c_attn.x]", 2, "match no module of model 'tiny-gpt2'"),
        # the shapes are the parts' (32 x 32), not whole c_attn's (96 x 32)
        ("lora", "qv, r: 33", 2, "r = 33 exceeds min(d_out, d_in) = 32 of a targeted 32 x 32"),
    ],
)
def test_slices_of_fused_projections_at_plan_time(tmp_path, method, targets, exit_code, message):
    plugins = gpt2_plugin(tmp_path)
    params = f"{{targets: {targets}}}"
    path = matrix(tmp_path, method, params, model="tiny-gpt2", task="piqa")
    result = validate(str(path), "--plugins", str(plugins))
    assert result.exit_code == exit_code, result.output
    assert message in " ".join(result.output.split())


def test_a_method_that_cannot_run_on_a_model_family_is_refused_at_plan_time(tmp_path):
    path = matrix(tmp_path, "loram", "{targets: qv}", model="tiny-gpt2", task="piqa")
    result = validate(str(path), "--plugins", str(gpt2_plugin(tmp_path)))
    assert result.exit_code == 2, result.output
    assert "methods/loram/method.yaml" in result.output and "Traceback" not in result.output
    assert "loram prunes ['bert', 'llama'] layers, not 'gpt2' (model 'tiny-gpt2')" in " ".join(
        result.output.split()
    )


def test_a_slice_on_a_compressed_base_or_parts_that_do_not_fit_are_spec_errors(tmp_path):
    plugins = gpt2_plugin(tmp_path)
    path = matrix(tmp_path, "lora", "{targets: qv}", model="tiny-gpt2", task="piqa")
    path.write_text(path.read_text() + "base_storage: [nf4]\n")
    result = validate(str(path), "--plugins", str(plugins))
    assert result.exit_code == 2, result.output
    assert "needs a dense base; the nf4 base stores it compressed" in " ".join(
        result.output.split()
    )
    preset = plugins / "models" / "tiny-gpt2.yaml"
    preset.write_text(preset.read_text().replace("[q, k, v]", "{q: 32, k: 32, v: 30}"))
    path = matrix(tmp_path, "lora", "{targets: qv}", model="tiny-gpt2", task="piqa")
    result = validate(str(path), "--plugins", str(plugins))
    assert result.exit_code == 2, result.output
    assert f"{preset}:9: fused_modules" in result.output
    assert "parts of transformer.h.0.attn.c_attn sum to 94 rows, the module has 96" in " ".join(
        result.output.split()
    )
