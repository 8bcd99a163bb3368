"""MoS against the authors' Tied_LoRA.py (tests/golden/mos, Forence1999/MoS@cafb8dd):
pool shapes and init, shard indices (private ranges exactly, shared ones by structure:
the random streams differ), and forward, pool gradients, delta weights and the trainable
count with the reference's pools and indices loaded."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from suite.methods.api import PrepareContext
from suite.plugins import load_object
from suite.registry import Catalog
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("mos")
CFG = FIX.config
KINDS, LAYERS, HIDDEN = CFG["kinds"], CFG["layers"], CFG["hidden"]
L, R, P, V = (
    CFG["num_chunk_per_vec"],
    CFG["lora_r"],
    CFG["valid_param_private_r"],
    CFG["valid_param_lora_r"],
)
PRIVATE_START = (V - P) * LAYERS * L


def _prepared(seed: int = 0):
    entry = Catalog.discover().methods.get("mos")
    cls = load_object(entry.spec.implementation, entry.path.parent)
    params = cls.Params.model_validate(
        {
            "r": R,
            "valid_r": V,
            "private_r": P,
            "shards": L,
            "alpha": CFG["lora_alpha"],
            "targets": KINDS,
        }
    )
    holder = nn.Module()
    holder.backbone = nn.Module()
    holder.backbone.model = nn.Module()
    holder.backbone.model.layers = nn.ModuleList()
    for i in range(LAYERS):
        block = nn.Module()
        block.self_attn = nn.Module()
        for kind in KINDS:
            base = nn.Linear(HIDDEN, HIDDEN)
            with torch.no_grad():
                base.weight.copy_(FIX[f"{kind}.{i}.weight"])
                base.bias.copy_(FIX[f"{kind}.{i}.bias"])
            setattr(block.self_attn, kind, base)
        holder.backbone.model.layers.append(block)
    ctx = PrepareContext(
        preset=SimpleNamespace(resolve_targets=lambda t: list(t)),
        seed=seed,
        device=torch.device("cpu"),
    )
    prepared = cls(params).prepare(holder, ctx)
    layers = {
        (i, k): getattr(holder.backbone.model.layers[i].self_attn, k)
        for i in range(LAYERS)
        for k in KINDS
    }
    return prepared, layers


def _loaded():
    prepared, layers = _prepared()
    with torch.no_grad():
        for (i, kind), m in layers.items():
            m.pool.a.copy_(FIX[f"{kind}.pool_A"])
            m.pool.b.copy_(FIX[f"{kind}.pool_B"].T)  # reference: (d_out / l) x pool
            m.shard_idx_a.copy_(FIX[f"{kind}.{i}.mask_A"])
            m.shard_idx_b.copy_(FIX[f"{kind}.{i}.mask_B"])
    return prepared, layers


def test_golden_mos_pools_and_init():
    _, layers = _prepared()
    bound = math.sqrt(3.0) * nn.init.calculate_gain("leaky_relu", math.sqrt(5)) / math.sqrt(HIDDEN)
    for kind in KINDS:
        ref_a, ref_b = FIX[f"{kind}.init.pool_A"], FIX[f"{kind}.init.pool_B"]
        ours = layers[(0, kind)].pool
        assert all(layers[(i, kind)].pool is ours for i in range(LAYERS))  # one pool per kind
        assert tuple(ours.a.shape) == tuple(ref_a.shape) == (V * LAYERS * L, HIDDEN // L)
        assert tuple(ours.b.shape) == tuple(ref_b.T.shape)
        assert torch.count_nonzero(ref_b) == 0 and torch.count_nonzero(ours.b) == 0
        # Kaiming-uniform with the fan of a whole vector (d_in): U(-bound, bound).
        for a in (ref_a, ours.a.detach()):
            assert float(a.abs().max()) <= bound and float(a.abs().max()) > 0.8 * bound
            assert abs(float(a.std()) - bound / math.sqrt(3)) < 0.25 * bound / math.sqrt(3)


def test_golden_mos_shard_indices():
    _, layers = _prepared()
    for (i, kind), m in layers.items():
        for ours, ref in (
            (m.shard_idx_a, FIX[f"{kind}.{i}.mask_A"]),
            (m.shard_idx_b, FIX[f"{kind}.{i}.mask_B"]),
        ):
            n_shared = (R - P) * L
            assert ours.shape == ref.shape == (R * L,)
            assert torch.equal(ours[n_shared:], ref[n_shared:])  # the layer's private shards
            for idx in (ours[:n_shared], ref[:n_shared]):  # randperm(private_start)[:n]
                assert len(set(idx.tolist())) == n_shared and int(idx.max()) < PRIVATE_START


def test_golden_mos_forward_gradients_and_delta():
    prepared, layers = _loaded()
    total = 0.0
    for (i, kind), m in layers.items():
        y = m(FIX[f"{kind}.{i}.x"])
        assert_close(y, FIX[f"{kind}.{i}.out"], f"forward {kind}.{i}")
        total = total + (y * FIX[f"{kind}.{i}.upstream"]).sum()
        assert_close(m.delta_weight(), FIX[f"{kind}.{i}.delta"], f"delta {kind}.{i}")
    total.backward()
    for kind in KINDS:
        pool = layers[(0, kind)].pool
        assert_close(pool.a.grad, FIX[f"{kind}.grad.pool_A"], f"grad pool A {kind}")
        assert_close(pool.b.grad.T, FIX[f"{kind}.grad.pool_B"], f"grad pool B {kind}")


def test_golden_mos_trainable_count():
    prepared, _ = _prepared()
    count = sum(p.numel() for p in prepared.model.parameters() if p.requires_grad)
    assert count == FIX.meta["trainable_params"]
