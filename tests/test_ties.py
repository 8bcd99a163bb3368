"""Tied hyperparameters: PiSSA's alpha follows r (alpha = r), RandLoRA's alpha = 20 r,
through defaults, matrix overrides and tuning draws."""

from __future__ import annotations

import textwrap

import pytest

from suite.cells import resolve_method
from suite.errors import SpecError
from suite.registry import Catalog
from suite.specs.matrix import MethodEntry, TuningSpec
from suite.specs.method import MethodSpec
from suite.tuning import apply_config, sample_configs, search_space
from tests.helpers import catalog


def test_pissa_alpha_follows_r_by_default_and_under_override():
    assert resolve_method(catalog(), MethodEntry(method="pissa")).params["alpha"] == 8
    moved = resolve_method(catalog(), MethodEntry(method="pissa", params={"r": 16}))
    assert moved.params["alpha"] == 16


def test_setting_the_tied_value_itself_unties_it():
    pinned = resolve_method(catalog(), MethodEntry(method="pissa", params={"r": 16, "alpha": 4}))
    assert pinned.params["alpha"] == 4
    assert apply_config(pinned, {"r": 8}).params["alpha"] == 4


def test_every_tuning_draw_moves_the_tied_value():
    method = resolve_method(catalog(), MethodEntry(method="pissa"))
    space = search_space(catalog(), method)
    configs = sample_configs(space, TuningSpec(trials=6, sampler="grid", seed=0), "pissa")
    assert {c["r"] for c in configs} == {4, 8, 16}
    for config in configs:
        assert apply_config(method, config).params["alpha"] == config["r"]


def test_a_tie_cannot_also_be_searched():
    with pytest.raises(ValueError, match="cannot be searched"):
        MethodSpec(
            name="x",
            implementation="m:X",
            ties={"alpha": {"to": "r"}},
            search_space={"alpha": {"choices": [1, 2]}},
        )


def test_a_tie_to_an_unknown_hyperparameter_names_the_file(tmp_path):
    folder = tmp_path / "methods" / "bad-tie"
    folder.mkdir(parents=True)
    (folder / "method.yaml").write_text(
        textwrap.dedent("""\
        name: bad-tie
        kind: lora
        ties:
          alpha: {to: rank}
        """)
    )
    with pytest.raises(SpecError) as err:
        resolve_method(Catalog.discover([tmp_path]), MethodEntry(method="bad-tie"))
    assert "method.yaml" in str(err.value) and "'rank'" in str(err.value)
