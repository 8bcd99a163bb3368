"""SNELLA against its authors' code (ssfgunner/SNELL: model/vision_transformer_timm.py
SNELLA, sparse_allocator.py Allocator, the train_alloc.py loop; fixture in
tests/golden/snella/): the mixed kernel, its sparsification, the branch and its five
gradients; then two layers trained through peftbench's own driver against the
reference's loop: each layer's sparsity after every allocation round, the losses and the
final tensors."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, train
from tests.helpers import catalog, tiny_preset
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("snella")
CFG = FX.config
NAMES = ("in_qs", "out_qs", "alpha", "gamma", "beta")
REF = dict(zip(NAMES, ("In_Qs", "Out_Qs", "alpha", "gamma", "beta"), strict=True))


class Toy(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.backbone = nn.Module()
        for name, (d_in, d_out) in zip("ab", itertools.pairwise(dims), strict=False):
            lin = nn.Linear(d_in, d_out)
            nn.init.zeros_(lin.weight), nn.init.zeros_(lin.bias)  # the branch alone
            setattr(self.backbone, name, lin)
        self.head = nn.Linear(1, 1)
        for p in self.backbone.parameters():
            p.requires_grad_(False)


def prepared(dims, **params):
    params = {"q": CFG["q"], "kernels": CFG["kernels"], "targets": ["a", "b"], **params}
    method = C.instantiate(resolve_method(catalog(), MethodEntry(method="snella", params=params)))
    model = Toy(dims)
    ctx = PrepareContext(preset=tiny_preset(), seed=0, device=torch.device("cpu"))
    return method.prepare(model, ctx), model


def test_golden_snella_kernel_sparsification_forward_gradients_count():
    prep, model = prepared((CFG["d_in"], CFG["d_mid"]), init_sparsity=CFG["layer_sparsity"])
    layer = model.backbone.a
    with torch.no_grad():
        layer.in_qs.copy_(FX["single.In_Qs"]), layer.out_qs.copy_(FX["single.Out_Qs"])
        layer.alpha.fill_(1.3), layer.gamma.fill_(0.7), layer.beta.fill_(0.05)
    assert_close(layer.kernel(), FX["single.kernel"], "mixed kernel")
    delta = layer.delta_weight()
    assert torch.equal(delta.T.detach() != 0, FX["single.sparse_kernel"] != 0), "survivors"
    assert_close(delta.T, FX["single.sparse_kernel"], "sparsified kernel")
    y = layer.update(FX["single.x"])
    assert_close(y, FX["single.update"], "branch output")
    (y * FX["single.upstream"]).sum().backward()
    for name in NAMES:
        assert_close(getattr(layer, name).grad, FX[f"single.grad.{REF[name]}"], f"grad {name}")
    assert C.adapter_param_count(prep) - 0 == FX.meta["trainable_params"]


def test_golden_snella_bi_level_allocation_through_the_driver():
    dims = (CFG["d_in"], CFG["d_mid"], CFG["d_out"])
    prep, model = prepared(
        dims,
        init_sparsity=CFG["init_thres"],
        target_sparsity=CFG["target_ratio"],
        beta1=CFG["beta1"],
        beta2=CFG["beta2"],
        rounds=CFG["epochs"],
    )
    layers = [model.backbone.a, model.backbone.b]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.in_qs.copy_(FX[f"chain.init.{i}.In_Qs"])
            layer.out_qs.copy_(FX[f"chain.init.{i}.Out_Qs"])
    x, target = FX["chain.x"], FX["chain.target"]

    def loss_fn(m, batch):
        return ((m.backbone.b(m.backbone.a(x)) - target) ** 2).mean()

    steps = CFG["epochs"] * CFG["steps_per_epoch"]
    cfg = LoopConfig(steps=steps, lr=CFG["lr"], schedule="constant")
    batches = itertools.repeat({"labels": torch.zeros(CFG["batch"])})
    stats = train(prep, batches, loss_fn, cfg)
    history = [[h["a"], h["b"]] for h in prep.hooks.history]
    assert torch.allclose(
        torch.tensor(history), torch.tensor(FX.meta["sparsity_per_epoch"]), atol=1e-12
    ), history
    assert torch.allclose(torch.tensor(stats.losses), torch.tensor(FX.meta["losses"]), atol=1e-5)
    for i, layer in enumerate(layers):
        for name in NAMES:
            assert_close(getattr(layer, name), FX[f"chain.final.{i}.{REF[name]}"], f"{i}.{name}")


def test_allocation_caps_each_layer_and_hands_on_the_rest():
    from methods.snella.impl import allocate

    caps = torch.tensor([10.0, 100.0, 100.0])
    alloc = allocate(torch.tensor([0.8, 0.1, 0.1]), 60, caps)
    # 48 wanted by the first layer, capped at 10; the 50 left shared by the other two.
    assert alloc.tolist() == [10, 25, 25]
    assert int(alloc.sum()) == 60
