"""The bottleneck adapter against adapter-hub/adapters' own `Adapter` module (fixture in
tests/golden/adapter/: the library's pre_forward / forward / post_forward on a BERT
sublayer, for its Houlsby and Pfeiffer configs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertSelfOutput

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, tiny_preset
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("adapter")
CFG = FX.config
D = CFG["hidden"]


class Toy(nn.Module):
    """A backbone with one BERT output sublayer at `layer.0.output`."""

    def __init__(self):
        super().__init__()
        config = BertConfig(hidden_size=D, hidden_dropout_prob=0.0, layer_norm_eps=1e-12)
        self.backbone = nn.Module()
        self.backbone.layer = nn.ModuleList([nn.Module()])
        self.backbone.layer[0].output = BertSelfOutput(config)
        self.head = nn.Linear(D, 2)
        sub = self.backbone.layer[0].output
        with torch.no_grad():
            sub.dense.weight.copy_(FX["dense.weight"])
            sub.dense.bias.copy_(FX["dense.bias"])
            sub.LayerNorm.weight.copy_(FX["norm.weight"])
            sub.LayerNorm.bias.copy_(FX["norm.bias"])
        for p in self.backbone.parameters():
            p.requires_grad_(False)


def adapted(style: str, **extra):
    params = {"style": style, "reduction_factor": CFG["reduction_factor"], **extra}
    method = C.instantiate(resolve_method(catalog(), MethodEntry(method="adapter", params=params)))
    model = Toy()
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    method.prepare(model, ctx)
    return model, model.backbone.layer[0].output


@pytest.mark.parametrize("style", ["houlsby", "pfeiffer"])
def test_golden_adapter_sublayer_output_gradients_count(style):
    model, sub = adapted(style)
    layer = sub.dense
    with torch.no_grad():
        layer.adapter_down.weight.copy_(FX[f"{style}.down.weight"])
        layer.adapter_up.weight.copy_(FX[f"{style}.up.weight"])
        layer.adapter_down.bias.copy_(FX[f"{style}.loaded.down.bias"])
        layer.adapter_up.bias.copy_(FX[f"{style}.loaded.up.bias"])
    y = sub(FX["x"], FX["input_tensor"])
    assert_close(y, FX[f"{style}.output"], "sublayer output")
    (y * FX["upstream"]).sum().backward()
    for ours, key in (
        (layer.adapter_down.weight, "down.weight"),
        (layer.adapter_down.bias, "down.bias"),
        (layer.adapter_up.weight, "up.weight"),
        (layer.adapter_up.bias, "up.bias"),
    ):
        assert_close(ours.grad, FX[f"{style}.grad.{key}"], f"grad {key}")
    count = C.adapter_param_count(_prepared(model))
    assert count == FX.meta["trainable_params"][style]


def _prepared(model):
    from suite.methods.adapters import adapter_prepared

    return adapter_prepared(model, mergeable=False)


def test_golden_adapter_style_defaults_are_the_librarys():
    for style in ("houlsby", "pfeiffer"):
        _, sub = adapted(style)
        act = {"swish": torch.nn.functional.silu, "relu": torch.nn.functional.relu}
        assert sub.dense.act is act[FX.meta["non_linearity"][style]]


def test_golden_adapter_bert_init_matches_the_librarys_distribution():
    layer = nn.Linear(768, 768)
    from suite.methods.bottleneck import BottleneckLinear, init_projections

    ours = BottleneckLinear(layer, 48, "houlsby", "swish", 1.0)
    init_projections(ours.adapter_down, ours.adapter_up, "bert", torch.Generator().manual_seed(0))
    for name, ref in (("down", FX["init768.down.weight"]), ("up", FX["init768.up.weight"])):
        mine = getattr(ours, f"adapter_{name}").weight.detach()
        assert mine.shape == ref.shape
        assert abs(float(mine.std()) - float(ref.std())) < 0.02 * 0.05  # both N(0, 0.02)
        assert abs(float(mine.mean())) < 1e-3 and abs(float(ref.mean())) < 1e-3
        assert float(ours.adapter_down.bias.detach().abs().max()) == 0.0


def test_golden_adapter_mam_init_is_the_identity():
    model, sub = adapted("houlsby", init="mam_adapter")
    assert torch.equal(sub.dense.adapter_up.weight.detach(), FX["mam.up.weight"])
    assert torch.equal(sub.dense.adapter_down.bias.detach(), FX["mam.down.bias"])
    plain = Toy().backbone.layer[0].output
    x, res = FX["x"], FX["input_tensor"]
    assert torch.allclose(sub(x, res), plain(x, res), atol=1e-6)


def test_pfeiffer_refuses_a_sublayer_without_layernorm():
    model = Toy()
    model.backbone.layer[0].output.LayerNorm = nn.Identity()
    method = C.instantiate(
        resolve_method(catalog(), MethodEntry(method="adapter", params={"style": "pfeiffer"}))
    )
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="post-LN output sublayer"):
        method.prepare(model, ctx)
