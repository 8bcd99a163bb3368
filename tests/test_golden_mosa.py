"""MoSA against its authors' code (Theia-4869/MoSA; fixture in tests/golden/mosa/: the
reference's Pruner masks and MoSABlock forwards, masked gradients, AdamW steps and merge),
and the split / schedule / merge rules the method rests on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, tiny_bench, tiny_preset
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("mosa")
CFG = FX.config
D, M, N = CFG["hidden"], CFG["bottleneck"], CFG["experts"]


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.layer = nn.ModuleList([nn.Module()])
        dense = nn.Linear(D, D)
        with torch.no_grad():  # identity: the wrapped layer computes x + f(x)
            dense.weight.copy_(torch.eye(D))
            dense.bias.zero_()
        self.backbone.layer[0].output = nn.Module()
        self.backbone.layer[0].output.dense = dense
        self.head = nn.Linear(D, 2)
        for p in self.backbone.parameters():
            p.requires_grad_(False)


def mosa(**extra):
    params = {"bottleneck": M, "experts": N, "share": "down", **extra}
    method = C.instantiate(resolve_method(catalog(), MethodEntry(method="mosa", params=params)))
    model = Toy()
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    prepared = method.prepare(model, ctx)
    return prepared, model.backbone.layer[0].output.dense


def loaded(tag: str = "loaded"):
    """The reference's experts loaded: each module's entries from its own expert (the
    experts' other entries are at the zero init), one bias row per module."""
    prepared, layer = mosa()
    with torch.no_grad():
        layer.adapter_down.weight.copy_(FX[f"{tag}.down.weight"])
        layer.adapter_down.bias.copy_(FX[f"{tag}.down.bias"])
        layer.adapter_up.weight.copy_(sum(FX[f"{tag}.up.weight{i}"] for i in range(N)))
        layer.up_bias.copy_(torch.stack([FX[f"{tag}.up.bias{i}"] for i in range(N)]))
    return prepared, layer


def test_golden_mosa_masks_are_the_pruners():
    _, layer = mosa()
    for i in range(N):
        assert torch.equal((layer.up_module == i).long(), FX[f"mask{i}"].long()), f"module {i}"


def test_golden_mosa_init_is_the_references_shape():
    _, layer = mosa()
    assert torch.equal(layer.adapter_up.weight.detach(), torch.zeros(D, M))  # experts' zero init
    assert float(layer.up_bias.detach().abs().max()) == 0.0
    bound = 1 / D**0.5  # kaiming_uniform(a=sqrt 5) on the shared down-projection
    for w in (layer.adapter_down.weight.detach(), FX["init.down.weight"]):
        assert float(w.abs().max()) <= bound


@pytest.mark.parametrize("module", range(N))
def test_golden_mosa_module_forward_and_masked_gradients(module):
    _, layer = loaded()
    layer.train()
    layer.draw = lambda: [0, module]
    y = layer(FX["x"])
    assert_close(y, FX[f"B{module}.output"], "block output")
    (y * FX["upstream"]).sum().backward()
    grad_w = layer.adapter_up.weight.grad
    assert_close(grad_w, FX[f"B{module}.grad.up.weight"], "masked up gradient")
    assert_close(layer.up_bias.grad[module], FX[f"B{module}.grad.up.bias"], "own bias gradient")
    others = [i for i in range(N) if i != module]
    assert float(layer.up_bias.grad[others].abs().max()) == 0.0
    assert_close(layer.adapter_down.weight.grad, FX[f"B{module}.grad.down.weight"], "down grad")
    assert_close(layer.adapter_down.bias.grad, FX[f"B{module}.grad.down.bias"], "down bias grad")


def test_golden_mosa_adamw_steps_move_only_the_drawn_modules():
    prepared, layer = loaded()
    layer.train()
    named = [(n, p) for n, p in prepared.model.named_parameters() if p.requires_grad]
    named = [(n, p) for n, p in named if not n.startswith("head")]
    opt = prepared.make_optimizer(named, 1e-2, 0.01)
    for module in FX.meta["steps_modules"]:
        layer.draw = lambda m=module: [0, m]
        opt.zero_grad(set_to_none=True)
        (layer(FX["x"]) * FX["upstream"]).sum().backward()
        opt.step()
    for i in range(N):
        w, b = layer.module_weight("up", i)
        assert_close(w, FX[f"steps.up.weight{i}"], f"module {i} weight after steps")
        assert_close(b, FX[f"steps.up.bias{i}"], f"module {i} bias after steps")
    assert_close(layer.adapter_down.weight, FX["steps.down.weight"], "shared down after steps")
    assert_close(layer.adapter_down.bias, FX["steps.down.bias"], "shared down bias after steps")


def test_golden_mosa_merge_is_the_references():
    _, layer = loaded("steps")  # the reference merged after its two AdamW steps
    layer.eval()
    merged = layer.merged_adapter()
    assert_close(merged["up.weight"], FX["merged.up.weight"], "merged up weight")
    assert_close(merged["up.bias"], FX["merged.up.bias"], "merged up bias")
    with torch.no_grad():
        assert_close(layer(FX["x"]), FX["merged.output"], "eval output after merge")


def test_split_modules_are_disjoint_and_cover_the_projection():
    from methods.mosa.impl import split_modules

    for shape, n in (((24, 5), 4), ((7, 3), 3), ((16, 16), 2)):
        module = split_modules(torch.rand(shape, generator=torch.Generator().manual_seed(3)), n)
        counts = torch.bincount(module.reshape(-1), minlength=n)
        assert int(counts.sum()) == shape[0] * shape[1]  # every entry in exactly one module
        assert int(counts.max() - counts.min()) <= 1  # 1/n quantile cuts
    with pytest.raises(ValueError, match="overlap"):
        split_modules(torch.zeros(4, 4), 2)


def test_each_training_forward_activates_the_drawn_modules():
    prepared, layer = mosa()
    layer.train()
    gen = torch.Generator().manual_seed(0 + 2)  # the method's draws: ctx.generator(2)
    for _ in range(6):
        expected = torch.randint(0, N, (2,), generator=gen).tolist()
        layer(FX["x"])
        assert layer.active == {"up": expected[1]}
        for name in ("adapter_up.weight", "up_bias"):
            mask = layer.active_mask(name.replace(".weight", ""))
            own = (layer.up_module == expected[1]) if name.endswith("weight") else None
            if own is not None:
                assert torch.equal(mask, own)
            else:
                assert mask[expected[1]].all() and int(mask.sum()) == D


def test_merged_adapter_output_is_the_mean_of_the_module_outputs():
    _, layer = loaded()
    layer.train()
    outputs = []
    for module in range(N):
        layer.draw = lambda m=module: [0, m]
        with torch.no_grad():
            outputs.append(layer(FX["x"]))
    layer.eval()
    with torch.no_grad():
        merged = layer(FX["x"])
    assert_close(merged, torch.stack(outputs).mean(0), "merge = mean of the modules")


def test_mosa_trains_on_tiny_bert_and_evaluates_merged():
    method = C.instantiate(
        resolve_method(catalog(), MethodEntry(method="mosa", params={"experts": 2})),
    )
    bench = tiny_bench()
    first, last = C.check_training(method, bench, steps=20)
    assert last < first
