"""AutoLoRA's gated fusion rule against the merger classes of lzws/AutoLoRA's own
train_merger.py (tests/golden/autolora/generate.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tests.support.golden import assert_close, load_fixture

FUSION = Path(__file__).resolve().parent.parent / "posthoc" / "autolora" / "fusion.py"


def _fusion():
    spec = importlib.util.spec_from_file_location("autolora_fusion", FUSION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["no_base", "no_cross"])
def test_golden_autolora_fusion_init_output_and_gradients(kind):
    fx, fusion = load_fixture("autolora"), _fusion()
    torch.manual_seed(fx.config["seed"])
    merger = fusion.GatedFusion(fx.config["dim"], kind, fx.config["w"])
    params = dict(merger.named_parameters())
    theirs = {k.removeprefix(f"{kind}.param."): v for k, v in fx.tensors.items()
              if k.startswith(f"{kind}.param.")}  # fmt: skip
    assert sorted(params) == sorted(theirs)
    for name, value in theirs.items():
        assert_close(params[name], value, f"{kind} init {name}")
    loras = fx["loras"].clone().requires_grad_(True)
    fused = merger(fx["base"], loras)
    assert_close(fused, fx[f"{kind}.fused"], f"{kind} fused output")
    (fused * fx["probe"]).sum().backward()
    assert_close(loras.grad, fx[f"{kind}.grad.loras"], f"{kind} grad of the LoRA outputs")
    for name, p in params.items():
        key = f"{kind}.grad.{name}"
        if key not in fx.tensors:  # no_cross computes LN(base) but its gate never uses it
            assert p.grad is None, name
            continue
        assert_close(p.grad, fx[key], f"{kind} grad {name}")


def test_lora_outputs_stack_each_adapters_scaled_output():
    fusion = _fusion()
    x, b, a = torch.randn(4, 6), torch.randn(5, 2), torch.randn(2, 6)
    assert torch.allclose(fusion.lora_outputs(x, [(b, a), (2 * b, a)])[1], 2 * x @ (b @ a).T)
