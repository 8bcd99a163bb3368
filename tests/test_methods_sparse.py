"""Sparse methods beyond the conformance suite: SHiRA masks, SpIEL prune/regrow,
adapter size on disk, SoRA gate pruning, LT-SFT phases, S2FT and SNELL structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.sparse import (
    PerEntryAdamW,
    SparseDeltaLinear,
    prune_and_regrow,
    seed_optimizer_entries,
    sparse_adapters,
)
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, TrainingDriver
from suite.train.measure import safetensors_bytes
from tests.helpers import catalog, minilm_bench, tiny_bench


def method(name: str, **params):
    return C.instantiate(resolve_method(catalog(), MethodEntry(method=name, params=params)))


def train_steps(prepared, bench, steps: int, lr: float = 1e-2, end: bool = True):
    """`suite.train.loop.train`'s calls through its driver (the method's own optimiser,
    the Trainer handle, a constant lr) on the bench's batches; `end=False` stops before
    `on_train_end`. Returns the optimiser in use at the end."""
    model, hooks = prepared.model, prepared.hooks
    model.train()
    driver = TrainingDriver(prepared, LoopConfig(steps=steps, lr=lr, schedule="constant"))
    hooks.bind_trainer(driver)
    hooks.on_train_start(steps)
    for step in range(steps):
        batch = bench.batches[step % len(bench.batches)]
        loss = C.loss_fn(model, batch)
        extra = hooks.extra_loss()
        driver.optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        (loss + extra if extra is not None else loss).backward()
        hooks.after_backward(step)
        driver.optimizer_step()
        hooks.after_optimizer_step(step)
    if end:
        hooks.on_train_end()
    return driver.optimizer


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


def test_spiel_support_keeps_the_reference_budget_across_prune_regrow_rounds():
    bench = tiny_bench()
    spiel = method("spiel", density=0.05, reselection_steps=5, accumulation_steps=2)
    prepared = C.prepare(spiel, bench)
    # SftModel's budget: 5% of ALL model parameters (embeddings and head included),
    # split over the targets by size (not 5% of each target matrix).
    total = sum(p.numel() for p in bench.build(0).parameters())
    layers = sparse_adapters(prepared.model)
    in_targets = sum(layer.base.weight.numel() for _, layer in layers)
    ks = {n: layer.k for n, layer in layers}
    for name, layer in layers:
        assert ks[name] == int(int(0.05 * total) * layer.base.weight.numel() / in_targets)
    assert sum(ks.values()) > 0.05 * in_targets
    before = {n: layer.indices.clone() for n, layer in layers}
    opt = train_steps(prepared, bench, steps=20)
    hooks = prepared.hooks
    for _, layer in layers:  # value-sized Adam state only (SftAdamW's age and moments)
        state = opt.state[layer.values]
        assert state["exp_avg"].shape == state["exp_avg_sq"].shape == (layer.k,)
        assert state["age"].shape == (layer.k,)
    assert len(hooks.swapped) == 4 and all(s > 0 for s in hooks.swapped)
    moved = 0
    for name, layer in layers:
        assert layer.k == ks[name] and len(layer.indices) == ks[name]
        assert len(torch.unique(layer.indices)) == ks[name]
        assert int(torch.count_nonzero(layer.values)) == ks[name]
        moved += len(set(layer.indices.tolist()) - set(before[name].tolist()))
    assert moved > 0
    assert all(layer.grad_hook is None for _, layer in layers)
    # Regrown entries have their own (younger) age: not every entry is at the global step.
    ages = torch.cat([opt.state[layer.values]["age"] for _, layer in layers])
    assert float(ages.max()) == 21.0 and float(ages.min()) < 21.0


def test_spiel_regrowth_picks_the_largest_accumulated_gradients():
    torch.manual_seed(0)
    layer = SparseDeltaLinear(nn.Linear(10, 10), torch.arange(0, 20))
    with torch.no_grad():
        layer.values.copy_(torch.arange(1, 21, dtype=torch.float32))  # |v| grows with slot
    candidates = torch.tensor([5, 50, 60, 70, 80, 90, 99, 1])
    scores = torch.tensor([100.0, -9.0, 1.0, 8.0, -7.0, 0.5, 6.0, 50.0])
    slots, grown = prune_and_regrow(layer, candidates, scores, rate=0.25)
    # The 5 smallest |v| (positions 0..4) are dropped. Candidate 5 is still active and is
    # skipped; candidate 1 was dropped and is regrown, so it keeps its slot and value. The
    # other four slots take the best remaining candidates by |score|, smallest |v| first.
    assert set(layer.indices.tolist()) == {1, 50, 70, 80, 99} | set(range(5, 20))
    assert slots.tolist() == [0, 2, 3, 4]
    assert layer.indices[[0, 2, 3, 4]].tolist() == [50, 70, 80, 99]
    assert candidates[grown].tolist() == [50, 70, 80, 99]  # where each slot's entry came from
    assert float(layer.values[1].detach()) != 0.0
    assert len(layer.indices) == 20
    assert torch.all(layer.values[slots] == 0)


def test_spiel_seeded_entry_takes_an_adam_step_with_its_own_bias_correction():
    """SftAdamW: an entry regrown with age n and moments seeded from the mean accumulated
    gradient g (times 1 - beta^n) steps as if it had seen g for n steps, whatever the
    global step; the other entries are untouched. Derived by hand below."""
    p = nn.Parameter(torch.tensor([0.5, -0.25, 1.0]))
    opt = PerEntryAdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-6)
    for _ in range(7):  # 7 global steps: ages 8 everywhere
        p.grad = torch.tensor([0.1, 0.2, 0.3])
        opt.step()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    assert state["age"].tolist() == [8.0, 8.0, 8.0]
    g_mean, g_sq, n = 0.4, 0.2, 3.0  # slot 1 regrown: mean grad 0.4, mean grad^2 0.2
    seeds = {
        "age": torch.tensor([n]),
        "exp_avg": torch.tensor([g_mean * (1 - 0.9**n)]),
        "exp_avg_sq": torch.tensor([g_sq * (1 - 0.99**n)]),
    }
    with torch.no_grad():
        p[1] = 0.0
    seed_optimizer_entries(opt, p, torch.tensor([1]), seeds)
    p.grad = torch.tensor([0.1, -0.5, 0.3])
    before = p.detach().clone()
    opt.step()
    m = 0.9 * g_mean * (1 - 0.9**n) + 0.1 * -0.5
    v = 0.99 * g_sq * (1 - 0.99**n) + 0.01 * 0.25
    step = 0.1 * (m / (1 - 0.9**n)) / ((v**0.5 + 1e-6) / (1 - 0.99**n) ** 0.5)
    assert float(p.detach()[1]) == pytest.approx(-step, rel=1e-5)
    assert opt.state[p]["age"].tolist() == [9.0, n + 1, 9.0]
    for i in (0, 2):  # untouched entries: plain (Hugging Face) AdamW at step 8
        m_i = 0.9 * state["exp_avg"][i] + 0.1 * p.grad[i]
        v_i = 0.99 * state["exp_avg_sq"][i] + 0.01 * p.grad[i] ** 2
        expected = 0.1 * (m_i / (1 - 0.9**8)) / ((v_i.sqrt() + 1e-6) / (1 - 0.99**8) ** 0.5)
        assert float(opt.state[p]["exp_avg"][i]) == pytest.approx(float(m_i))
        assert float(p.detach()[i]) == pytest.approx(float(before[i] - expected), rel=1e-5)


# ---- adapter size on disk -------------------------------------------------------------


@pytest.mark.parametrize(("name", "share"), [("shira", 0.01), ("spiel", 0.0214)])
def test_sparse_adapter_is_its_values_plus_int32_indices(name, share):
    """At density 0.01 on minilm-l6's linear layers: SHiRA keeps 1% of each target and
    SpIEL 1% of ALL model parameters (2.14% of the target weights, as SftModel does); the
    saved adapter is values + int32 indices, about 2x those entries' dense bytes."""
    bench = minilm_bench()
    prepared = C.prepare(method(name, density=0.01, targets="all-linear"), bench)
    layers = sparse_adapters(prepared.model)
    assert len(layers) == 6 * 6
    numel = sum(layer.base.weight.numel() for _, layer in layers)
    entries = sum(layer.k for _, layer in layers)
    assert abs(entries / numel - share) < 1e-4
    dense = sum(layer.base.weight.numel() * layer.base.weight.element_size() for _, layer in layers)
    state = {k: v for k, v in prepared.adapter_state().items() if not k.startswith("head.")}
    assert set(state) == {f"{n}.{t}" for n, _ in layers for t in ("values", "indices")}
    assert all(layer.indices.dtype == torch.int32 for _, layer in layers)
    assert safetensors_bytes(state) <= 1.01 * 2 * share * dense


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

    assert prepared.trainable_count() == k  # what the runner reports: the K entries


def test_lt_sft_a_layer_with_no_kept_weight_stays_frozen_in_phase_2():
    """The global top K can leave a whole layer out; that layer must not train on."""
    bench = tiny_bench()
    prepared = C.prepare(method("lt-sft", density=0.05, full_ft_fraction=0.5), bench)
    hooks = prepared.hooks
    layers = [m for m in prepared.model.modules() if type(m).__name__ == "LTSFTLinear"]
    switch = hooks.switch

    def spy():
        with torch.no_grad():
            layers[0].delta.zero_()  # it moved least of all: nothing of it is kept
        switch()

    hooks.switch = spy
    train_steps(prepared, bench, steps=10, lr=1e-2)
    assert layers[0].masked and len(layers[0].indices) == 0
    assert float(layers[0].delta.detach().abs().max()) == 0.0
    k = int(0.05 * sum(m.delta.numel() for m in layers))
    assert prepared.trainable_count() == k
    fresh = C.prepare(method("lt-sft", density=0.05), bench)
    fresh.load_adapter_state(prepared.adapter_state())
    assert fresh.trainable_count() == k


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
    C.perturb(model)
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
        "methods: [shira, {method: spiel, params: {targets: attention, density: 0.005}},\n"
        "  {method: lt-sft, params: {targets: attention}}, s2ft, sora, snell]\n"
        "tasks: [drug-condition]\nseeds: [0]\nbudget: {max_steps: 24, batch_size: 8}\n"
    )
    db = tmp_path / "r.duckdb"
    repo = Path(__file__).resolve().parents[1]
    plugins = ["--plugins", str(tiny_plugins), "--plugins", str(tmp_path)]
    run = [sys.executable, "-m", "suite.cli", "run", "sparse-tiny", *plugins, "--db", str(db)]
    done = subprocess.run(run, cwd=repo, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    sql = "select method, status, merge_max_abs_diff, adapter_bytes, adapter_params from results"
    query = [sys.executable, "-m", "suite.cli", "query", sql, "--db", str(db), "--format", "json"]
    out = subprocess.run(query, cwd=repo, capture_output=True, text=True, timeout=300)
    rows = {r["method"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"shira", "spiel", "lt-sft", "s2ft", "sora", "snell"}
    for name, row in rows.items():
        assert row["status"] == "ok", name
        assert row["merge_max_abs_diff"] < 1e-4, name
        assert row["adapter_bytes"] > 0, name
    # LT-SFT reports its K-entry adapter (1% of tiny-bert's 8 attention matrices of 32x32),
    # not phase 1's dense count.
    assert rows["lt-sft"]["adapter_params"] == int(0.01 * 8 * 32 * 32)


@pytest.mark.parametrize("path", ["dense", "chunked", "hooked"])
def test_sparse_delta_trains_under_bf16_autocast(path):
    """The league runs under CPU bf16 autocast: the custom backward got a bf16 grad_out
    beside an fp32 input and SHiRA's trials failed with "expected m1 and m2 to have the
    same dtype". Each backward path now gives the values a gradient near fp32's."""
    torch.manual_seed(0)
    layer = SparseDeltaLinear(nn.Linear(16, 8), torch.randperm(128)[:20])
    seen = []
    if path == "chunked":
        layer.grad_chunk_rows = 3
    if path == "hooked":
        layer.grad_hook = seen.append
    x = torch.randn(4, 5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = layer(x).float().pow(2).sum()
    loss.backward()  # outside autocast, as the training loop runs it
    bf16 = layer.values.grad.clone()
    layer.values.grad = None
    layer(x).pow(2).sum().backward()
    assert bf16.dtype == torch.float32 and torch.allclose(
        bf16, layer.values.grad, rtol=0.05, atol=0.05
    )
    assert (path == "hooked") == bool(seen)
