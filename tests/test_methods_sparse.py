"""Sparse methods beyond the conformance suite: SHiRA masks, SpIEL prune/regrow,
adapter size on disk, SoRA gate pruning, LT-SFT phases, S2FT and SNELL structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.sparse import (
    SparseDeltaLinear,
    prune_and_regrow,
    sparse_adapters,
)
from suite.specs.matrix import MethodEntry
from suite.train.measure import safetensors_bytes
from tests.helpers import catalog, minilm_bench, tiny_bench


def method(name: str, **params):
    return C.instantiate(resolve_method(catalog(), MethodEntry(method=name, params=params)))


def train_steps(prepared, bench, steps: int, lr: float = 1e-2, end: bool = True):
    """The generic loop's order of calls, on the bench's batches (hooks see the optimiser)."""
    model = prepared.model
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    prepared.hooks.bind_optimizer(opt)
    prepared.hooks.on_train_start(steps)
    for step in range(steps):
        batch = bench.batches[step % len(bench.batches)]
        loss = C.loss_fn(model, batch)
        extra = prepared.hooks.extra_loss()
        opt.zero_grad(set_to_none=True)
        (loss + extra if extra is not None else loss).backward()
        prepared.hooks.after_backward(step)
        opt.step()
        prepared.hooks.after_optimizer_step(step)
    if end:
        prepared.hooks.on_train_end()
    return opt


def backbone_trainable(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.backbone.named_parameters() if p.requires_grad}


# ---- SHiRA ----------------------------------------------------------------------------


def test_shira_random_mask_has_lora_budget_and_only_value_vectors_train():
    prepared = C.prepare(method("shira", r=4, targets="attention"), tiny_bench())
    layers = sparse_adapters(prepared.model)
    assert len(layers) == 2 * 4
    for _, layer in layers:
        assert layer.k == 4 * (32 + 32)
        assert len(torch.unique(layer.indices)) == layer.k
    trainable = backbone_trainable(prepared.model)
    assert all(p.ndim == 1 for p in trainable.values())
    assert sum(p.numel() for p in trainable.values()) == 8 * 4 * 64


@pytest.mark.parametrize("mask", ["magnitude", "gradient", "snip"])
def test_shira_scored_masks_pick_the_top_scores(mask):
    bench = tiny_bench()
    prepared = C.prepare(method("shira", density=0.1, mask=mask, mask_batches=2), bench)
    model = prepared.model
    assert not any(p.grad is not None for p in model.parameters()), "mask pass left grads"
    reference = bench.build(0)
    base = reference.backbone.encoder.layer[0].attention.self.query
    if mask != "magnitude":
        base.weight.requires_grad_(True)
        for batch in bench.batches[:2]:
            C.loss_fn(reference, batch).backward()
    score = {
        "magnitude": lambda: base.weight.abs(),
        "gradient": lambda: base.weight.grad.abs(),
        "snip": lambda: (base.weight.grad * base.weight).abs(),
    }[mask]().detach()
    layer = model.backbone.encoder.layer[0].attention.self.query
    chosen = score.reshape(-1)[layer.indices.long()]
    assert chosen.min() >= torch.topk(score.reshape(-1), layer.k).values.min() - 1e-7
    assert not layer.base.weight.requires_grad


# ---- SpIEL ----------------------------------------------------------------------------


def test_spiel_support_stays_at_density_across_prune_regrow_rounds():
    bench = tiny_bench()
    spiel = method("spiel", density=0.05, reselection_steps=5, accumulation_steps=2)
    prepared = C.prepare(spiel, bench)
    ks = {n: layer.k for n, layer in sparse_adapters(prepared.model)}
    assert all(
        k == int(0.05 * layer.base.weight.numel())
        for (_, layer), k in zip(sparse_adapters(prepared.model), ks.values(), strict=True)
    )
    before = {n: layer.indices.clone() for n, layer in sparse_adapters(prepared.model)}
    opt = train_steps(prepared, bench, steps=20)
    hooks = prepared.hooks
    for _, layer in sparse_adapters(prepared.model):  # value-sized Adam moments only
        state = opt.state[layer.values]
        assert state["exp_avg"].shape == state["exp_avg_sq"].shape == (layer.k,)
    assert len(hooks.swapped) == 4 and all(s > 0 for s in hooks.swapped)
    moved = 0
    for name, layer in sparse_adapters(prepared.model):
        assert layer.k == ks[name] and len(layer.indices) == ks[name]
        assert len(torch.unique(layer.indices)) == ks[name]
        assert int(torch.count_nonzero(layer.values)) == ks[name]
        moved += len(set(layer.indices.tolist()) - set(before[name].tolist()))
    assert moved > 0
    assert all(layer.grad_hook is None for _, layer in sparse_adapters(prepared.model))


def test_spiel_regrowth_picks_the_largest_accumulated_gradients_and_resets_adam():
    torch.manual_seed(0)
    layer = SparseDeltaLinear(nn.Linear(10, 10), torch.arange(0, 20))
    with torch.no_grad():
        layer.values.copy_(torch.arange(1, 21, dtype=torch.float32))  # |v| grows with slot
    opt = torch.optim.AdamW([layer.values], lr=0.1)
    layer.values.grad = torch.ones(20)
    opt.step()
    candidates = torch.tensor([5, 50, 60, 70, 80, 90, 99, 1])
    scores = torch.tensor([100.0, -9.0, 1.0, 8.0, -7.0, 0.5, 6.0, 50.0])
    slots = prune_and_regrow(layer, candidates, scores, rate=0.25, optimizer=opt)
    # The 5 smallest |v| (positions 0..4) are dropped. Candidate 5 is still active and is
    # skipped; candidate 1 was dropped and is regrown, so it keeps its slot and value. The
    # other four slots take the best remaining candidates by |score|, smallest |v| first.
    assert set(layer.indices.tolist()) == {1, 50, 70, 80, 99} | set(range(5, 20))
    assert torch.equal(torch.sort(slots).values, torch.tensor([0, 2, 3, 4]))
    assert layer.indices[[0, 2, 3, 4]].tolist() == [50, 70, 80, 99]
    assert float(layer.values[1].detach()) != 0.0
    assert len(layer.indices) == 20
    assert torch.all(layer.values[slots] == 0)
    state = opt.state[layer.values]
    assert torch.all(state["exp_avg"][slots] == 0) and torch.all(state["exp_avg_sq"][slots] == 0)
    kept = torch.ones(20, dtype=torch.bool)
    kept[slots] = False
    assert torch.all(state["exp_avg"][kept] != 0)


# ---- adapter size on disk -------------------------------------------------------------


@pytest.mark.parametrize("name", ["shira", "spiel"])
def test_adapter_at_1_percent_is_at_most_3_percent_of_dense_target_bytes(name):
    bench = minilm_bench()
    prepared = C.prepare(method(name, density=0.01, targets="all-linear"), bench)
    layers = sparse_adapters(prepared.model)
    assert len(layers) == 6 * 6
    dense = sum(layer.base.weight.numel() * layer.base.weight.element_size() for _, layer in layers)
    state = {k: v for k, v in prepared.adapter_state().items() if not k.startswith("head.")}
    assert set(state) == {f"{n}.{t}" for n, _ in layers for t in ("values", "indices")}
    assert safetensors_bytes(state) <= 0.03 * dense


# ---- SoRA -----------------------------------------------------------------------------


def test_sora_gates_reach_zero_and_the_pruned_lora_matches_the_gated_model():
    bench = tiny_bench()
    sora = method("sora", r=8, sparse_lambda_2=0.3, targets="attention")
    prepared = C.prepare(sora, bench)
    train_steps(prepared, bench, steps=5, lr=1e-2, end=False)
    model = prepared.model.eval()
    layers = [m for m in model.modules() if type(m).__name__ == "SoRALinear"]
    zeros = sum(int((m.gate == 0).sum()) for m in layers)
    assert 0 < zeros < 8 * len(layers), "the threshold should zero some ranks, not all"
    gated = C.outputs(model, bench)
    prepared.hooks.on_train_end()
    assert all(m.gate is None for m in layers)
    assert sum(m.rank for m in layers) == 8 * len(layers) - zeros
    assert not any(n.endswith("gate") for n, _ in model.named_parameters())
    pruned = C.outputs(model, bench)
    assert float((pruned - gated).abs().max()) < 1e-5
    fresh = C.prepare(sora, bench)
    fresh.load_adapter_state(prepared.adapter_state())
    assert float((C.outputs(fresh.model, bench) - pruned).abs().max()) < 1e-5
    prepared.merge()
    assert float((C.outputs(model, bench) - pruned).abs().max()) < 1e-5


def test_sora_threshold_schedule_steps_through_the_lambdas():
    sora = method("sora", schedule="linear", sparse_lambda_2=1e-3, max_lambda=4e-3, lambda_num=4)
    prepared = C.prepare(sora, tiny_bench())
    hooks = prepared.hooks
    hooks.on_train_start(8)
    seen = [hooks.threshold(step) for step in range(8)]
    assert seen == pytest.approx([1e-3, 1e-3, 2e-3, 2e-3, 3e-3, 3e-3, 4e-3, 4e-3])


# ---- LT-SFT ---------------------------------------------------------------------------


def test_lt_sft_keeps_the_most_moved_weights_resets_to_theta0_and_trains_only_them():
    bench = tiny_bench()
    prepared = C.prepare(method("lt-sft", density=0.05, full_ft_fraction=0.5), bench)
    model, hooks = prepared.model, prepared.hooks
    layers = [m for m in model.modules() if type(m).__name__ == "LTSFTLinear"]
    head0 = model.head.weight.detach().clone()
    seen = {}
    switch = hooks.switch

    def spy():  # observe the phase switch the hook triggers after step 5 of 10
        seen["moved"] = torch.cat([m.delta.detach().abs() for m in layers])
        switch()
        seen["kept"] = torch.cat([m.mask() for m in layers])
        seen["zero"] = all(float(m.delta.abs().max()) == 0.0 for m in layers)
        seen["head_reset"] = torch.equal(model.head.weight, head0)

    hooks.switch = spy
    train_steps(prepared, bench, steps=10, lr=1e-2)
    k = int(0.05 * seen["moved"].numel())
    threshold = torch.topk(seen["moved"], k).values.min()
    assert torch.equal(seen["kept"], seen["moved"] >= threshold) and int(seen["kept"].sum()) == k
    assert seen["zero"] and seen["head_reset"]
    assert torch.equal(torch.cat([m.mask() for m in layers]), seen["kept"])
    for m in layers:
        assert float(m.delta.detach()[~m.mask()].abs().max()) == 0.0
    assert int(sum(torch.count_nonzero(m.delta) for m in layers)) == k
    state = prepared.adapter_state()
    assert not any(name.endswith(".delta") for name in state)
    assert sum(v.numel() for n, v in state.items() if n.endswith(".values")) == k


# ---- SNELL ----------------------------------------------------------------------------


def test_snell_update_is_a_sparsified_high_rank_kernel_of_two_factors():
    prepared = C.prepare(method("snell", q=4, sparsity=0.5), minilm_bench())
    layer = prepared.model.backbone.encoder.layer[0].attention.self.query
    k = layer.kernel().detach()
    delta = layer.delta_weight().detach().T
    kept = delta != 0
    assert abs(kept.float().mean().item() - 0.5) < 0.01
    assert torch.allclose(delta[kept], (k * k.abs())[kept])
    assert float(k.abs()[kept].min()) >= float(k.abs()[~kept].max())
    assert torch.linalg.matrix_rank(delta) > 4 * 2  # beyond a rank-q product
    assert sum(p.numel() for p in (layer.in_qs, layer.out_qs)) == 4 * (384 + 384)


# ---- S2FT -----------------------------------------------------------------------------


def test_s2ft_trains_dense_slices_of_selected_heads_and_channels_on_minilm():
    bench = minilm_bench()
    assert C.check_identity(method("s2ft"), bench) < 1e-5
    prepared = C.prepare(method("s2ft"), bench)
    model = prepared.model
    slices = {n: m for n, m in model.named_modules() if type(m).__name__ == "S2SliceLinear"}
    heads = sum(m.n // 32 for n, m in slices.items() if "attention" in n)
    channels = sum(m.n for n, m in slices.items() if "attention" not in n)
    assert (heads, channels) == (int(72 * 0.052), int(6 * 1536 * 0.02)) == (3, 184)
    assert C.adapter_param_count(prepared) == heads * 32 * 384 + channels * 384 == 107_520
    C._perturb(model)
    unmerged = C.outputs(model, bench)
    prepared.merge()
    assert all(m.merged for m in slices.values())  # the slices now live in the weights
    assert float((C.outputs(model, bench) - unmerged).abs().max()) < 1e-5


# ---- through the runner ---------------------------------------------------------------


def test_every_sparse_method_runs_a_cell_end_to_end(tiny_plugins, tmp_path):
    """The generic runner drives all six (hooks, phase switch, pruning, merge, bytes)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "matrices").mkdir()
    (tmp_path / "matrices" / "sparse-tiny.yaml").write_text(
        "name: sparse-tiny\nmodels: [tiny-bert]\n"
        "methods: [shira, {method: spiel, params: {targets: attention}},\n"
        "  {method: lt-sft, params: {targets: attention}}, s2ft, sora, snell]\n"
        "tasks: [drug-condition]\nseeds: [0]\nbudget: {max_steps: 24, batch_size: 8}\n"
    )
    db = tmp_path / "r.duckdb"
    repo = Path(__file__).resolve().parents[1]
    plugins = ["--plugins", str(tiny_plugins), "--plugins", str(tmp_path)]
    run = [sys.executable, "-m", "suite.cli", "run", "sparse-tiny", *plugins, "--db", str(db)]
    done = subprocess.run(run, cwd=repo, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    sql = "select method, status, merge_max_abs_diff, adapter_bytes from results"
    query = [sys.executable, "-m", "suite.cli", "query", sql, "--db", str(db), "--format", "json"]
    out = subprocess.run(query, cwd=repo, capture_output=True, text=True, timeout=300)
    rows = {r["method"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"shira", "spiel", "lt-sft", "s2ft", "sora", "snell"}
    for name, row in rows.items():
        assert row["status"] == "ok", name
        assert row["merge_max_abs_diff"] < 1e-4, name
        assert row["adapter_bytes"] > 0, name
