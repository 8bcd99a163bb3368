"""SaRA against its authors' optimiser (sjtuplayer/SaRA optim/adamw2.py; fixture in
tests/golden/sara/): the selected entries, the losses and the weights after every step
through peftbench's driver (nuclear-norm term, decoupled decay on the weights, the
progressive reselection), plus the unstructured backpropagation's gradients."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.methods.sparse import SparseDeltaLinear
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, train
from tests.helpers import catalog, tiny_preset
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("sara")
CFG = FX.config


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        d = CFG["dims"]
        self.backbone = nn.Module()
        for i, name in enumerate("ab"):
            lin = nn.Linear(d[i], d[i + 1])
            with torch.no_grad():
                lin.weight.copy_(FX[f"init.{i}.weight"]), lin.bias.copy_(FX[f"init.{i}.bias"])
            setattr(self.backbone, name, lin)
        self.head = nn.Linear(1, 1)
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def run(self, x):
        return self.backbone.b(torch.relu(self.backbone.a(x)))


def prepared(**params):
    params = {
        "threshold": CFG["threshold"],
        "lambda_rank": CFG["lambda_rank"],
        "progressive_at": CFG["progressive_iter"] / CFG["steps"],
        "targets": ["a", "b"],
        **params,
    }
    method = C.instantiate(resolve_method(catalog(), MethodEntry(method="sara", params=params)))
    model = Toy()
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    return method.prepare(model, ctx), model


def test_golden_sara_selection_steps_and_progressive_reselection():
    prep, model = prepared()
    layers = [model.backbone.a, model.backbone.b]
    for i, layer in enumerate(layers):
        mask = torch.zeros(layer.base.weight.numel(), dtype=torch.bool)
        mask[layer.indices.long()] = True
        assert torch.equal(mask.view_as(layer.base.weight), FX[f"mask.{i}"]), f"mask {i}"
        assert layer.k == FX.meta["trainable_params"][i]
    choices = iter(CFG["choices"])
    prep.hooks.choose = lambda: next(choices)
    weights = []
    cfg = LoopConfig(
        steps=CFG["steps"], lr=CFG["lr"], weight_decay=CFG["weight_decay"], schedule="constant"
    )
    batches = itertools.repeat({"labels": torch.zeros(CFG["batch"])})

    def loss_fn(m, batch):
        return ((m.run(FX["x"]) - FX["target"]) ** 2).mean()

    def record(step, loss):
        weights.append([layer.merged_weight().detach().clone() for layer in layers])

    stats = train(prep, batches, loss_fn, cfg, on_step=record)
    assert torch.allclose(torch.tensor(stats.losses), torch.tensor(FX.meta["losses"]), atol=1e-6)
    for step, ws in enumerate(weights):
        for i, w in enumerate(ws):
            assert_close(w, FX[f"step{step}.{i}.weight"], f"weight {i} after step {step}")
    for i, layer in enumerate(layers):
        adaptive = torch.zeros(layer.base.weight.numel(), dtype=torch.bool)
        adaptive[layer.indices.long()[~layer.frozen]] = True
        assert torch.equal(adaptive.view_as(layer.base.weight), FX[f"adaptive.{i}"])
    assert prep.hooks.chosen == CFG["choices"]


def test_golden_sara_identity_at_init_and_low_rank_layers():
    prep, model = prepared()
    x = FX["x"]
    plain = Toy()
    assert torch.equal(model.run(x), plain.run(x))
    assert [int(min(m.base.weight.shape) > 64) for m in prep.hooks.rank_layers] == [1, 1]
    assert len(prep.hooks.rank_layers) == len(FX.meta["low_rank_ids"])


@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
def test_unstructured_backprop_gathers_the_dense_gradient_at_the_entries(rows):
    torch.manual_seed(0)
    lin = nn.Linear(20, 30)
    idx = torch.randperm(600)[:90]
    chunked, dense = SparseDeltaLinear(lin, idx), SparseDeltaLinear(nn.Linear(20, 30), idx)
    dense.base.load_state_dict(lin.state_dict())
    chunked.grad_chunk_rows = rows
    x = torch.randn(3, 5, 20)
    up = torch.randn(3, 5, 30)
    for layer in (chunked, dense):
        with torch.no_grad():
            layer.values.copy_(torch.linspace(-0.1, 0.1, 90))
        (layer(x) * up).sum().backward()
    assert torch.allclose(chunked.values.grad, dense.values.grad, atol=1e-5)
    full = (up.reshape(-1, 30).T @ x.reshape(-1, 20)).reshape(-1)
    assert torch.allclose(chunked.values.grad, full[chunked.indices.long()], atol=1e-5)


def test_sara_refuses_two_selection_rules():
    with pytest.raises(ValueError, match="exactly one of threshold"):
        prepared(fraction=0.1)
