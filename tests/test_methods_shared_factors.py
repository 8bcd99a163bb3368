"""MoS and Comp-LoRA beyond conformance (docs/methods-adaptive-mixture.md): methods that
share or constrain LoRA's factors. MoS pool sharing, privatisation and dissociation;
Comp-LoRA's update orthogonal to W0's top-k subspaces on both sides."""

from __future__ import annotations

import torch

from suite import conformance as C
from tests.helpers import minilm_bench, tiny_bench
from tests.support.methods import method_with

# ---------------------------------------------------------------- MoS


def test_mos_layers_share_pools_with_private_and_dissociated_shards():
    bench = minilm_bench()  # 6 layers: room for the default r=6, valid_r=2, private_r=1
    method = method_with("mos", r=6, valid_r=2, private_r=1, shards=2)
    prepared = C.prepare(method, bench)
    layers = [m for m in prepared.model.modules() if hasattr(m, "shard_idx_a")]
    queries = [m for m in layers if m.base.weight.shape == layers[0].base.weight.shape][::2]
    assert len({id(m.pool) for m in layers}) == 2  # one pool for query, one for value
    assert all(m.pool is queries[0].pool for m in queries)
    private_start = (2 - 1) * 6 * 2
    privates = [set(m.shard_idx_a[m.shard_idx_a >= private_start].tolist()) for m in queries]
    assert all(len(s) == 2 for s in privates)  # private_r * shards
    assert all(a.isdisjoint(b) for i, a in enumerate(privates) for b in privates[i + 1 :])
    assert any(not torch.equal(m.shard_idx_a, m.shard_idx_b) for m in layers)  # pair dissociation
    m = queries[0]
    a, _ = m.factors()
    r = 6
    expected_row = torch.cat([m.pool.a[m.shard_idx_a[2]], m.pool.a[m.shard_idx_a[3]]])  # vector 1
    assert a.shape == (r, m.in_features) and torch.equal(a[1], expected_row)
    # LoRA's count at rank valid_r, while each layer works at rank r.
    lora_valid_r = sum(2 * (x.in_features + x.out_features) for x in layers)
    assert C.adapter_param_count(prepared) == lora_valid_r


# ---------------------------------------------------------------- Comp-LoRA


def test_comp_lora_update_avoids_w0_top_k_subspaces_on_both_sides():
    bench = tiny_bench()
    prepared = C.prepare(method_with("comp-lora", r=4, k=8), bench)
    C.perturb(prepared.model)  # B leaves zero, so the update is not trivially zero
    adapters = [m for m in prepared.model.modules() if hasattr(m, "u_k")]
    assert adapters
    for m in adapters:
        u, _, vh = torch.linalg.svd(m.base.weight.detach(), full_matrices=False)
        delta = m.delta_weight().detach()
        assert delta.abs().max() > 1e-3
        assert (u[:, :8].T @ delta).abs().max() < 1e-5  # writes nothing along W0's top-k outputs
        assert (delta @ vh[:8].T).abs().max() < 1e-5  # reads nothing along its top-k inputs
        # The forward is the two-sided projection of a LoRA update (computed from scratch).
        x = torch.randn(5, m.in_features, generator=torch.Generator().manual_seed(0))
        p_in = torch.eye(m.in_features) - vh[:8].T @ vh[:8]
        p_out = torch.eye(m.out_features) - u[:, :8] @ u[:, :8].T
        expected = x @ (p_out @ m.lora_B.weight @ m.lora_A.weight @ p_in).T * m.scaling
        assert torch.allclose(m.update(x), expected, atol=1e-5)
