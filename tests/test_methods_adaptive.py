"""Method-specific checks for the adaptive-rank and mixture methods (beyond conformance)."""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from tests.helpers import minilm_bench, tiny_bench
from tests.test_conformance import built

LLAMA_3B_QV = [(3072, 3072), (1024, 3072)] * 28  # (d_out, d_in) of q_proj, v_proj x 28 layers


def method_with(name: str, **overrides):
    method, _, _ = built(name)
    return type(method)(
        type(method).Params.model_validate({**method.params.model_dump(), **overrides})
    )


def run_steps(prepared, bench, steps: int, lr: float = 1e-2) -> list[float]:
    """The training driver at a constant lr with no clipping, cycling the bench's batches."""
    import itertools

    from suite.train.loop import LoopConfig, train

    cfg = LoopConfig(steps=steps, lr=lr, schedule="constant")
    stats = train(prepared, itertools.cycle(bench.batches), C.loss_fn, cfg)
    prepared.model.eval()
    return stats.losses


# ---------------------------------------------------------------- AdaLoRA


def peft_adalora_count(backbone, init_r: int, targets: list[str]) -> int:
    from peft import AdaLoraConfig, get_peft_model

    config = AdaLoraConfig(init_r=init_r, target_r=4, target_modules=targets, total_step=100)
    peft_model = get_peft_model(backbone, config)
    return sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("bench_fn", [tiny_bench, minilm_bench], ids=["tiny", "minilm"])
@pytest.mark.parametrize("init_r", [6, 12])
def test_adalora_count_equals_peft(bench_fn, init_r):
    bench = bench_fn()
    method = method_with("adalora", init_r=init_r, target_r=4)
    ours = C.adapter_param_count(C.prepare(method, bench))
    patterns = bench.preset.resolve_targets("qv")
    assert ours == peft_adalora_count(bench.build(0).backbone, init_r, patterns)


def test_adalora_forward_matches_peft_with_the_same_weights():
    from peft import AdaLoraConfig, get_peft_model

    bench = tiny_bench()
    prepared = C.prepare(method_with("adalora", init_r=6, target_r=4, alpha=8), bench)
    C.perturb(prepared.model)  # lambda leaves zero so the update is not trivially zero
    targets = bench.preset.resolve_targets("qv")
    config = AdaLoraConfig(
        init_r=6, target_r=4, lora_alpha=8, target_modules=targets, total_step=100
    )
    peft_model = get_peft_model(bench.build(0).backbone, config).eval()
    ours = dict(prepared.model.backbone.named_modules())
    with torch.no_grad():
        for name, module in peft_model.base_model.model.named_modules():
            if hasattr(module, "lora_E") and "default" in module.lora_E:
                for kind in ("lora_A", "lora_E", "lora_B"):
                    getattr(module, kind)["default"].copy_(getattr(ours[name], kind)[0])
        batch = {k: v for k, v in bench.batches[0].items() if k != "labels"}
        expected = peft_model(**batch).last_hidden_state
        got = prepared.model.backbone(**batch).last_hidden_state
        base = bench.build(0).backbone(**batch).last_hidden_state
    assert (got - base).abs().max() > 1e-4  # the update is visible at this tolerance
    assert torch.allclose(got, expected, atol=1e-6)


def test_adalora_llama_3b_reference_count():
    method = method_with("adalora", init_r=64, target_r=32)
    assert method.expected_trainable_params(LLAMA_3B_QV) == 18_353_664


def test_adalora_budget_schedule_is_cubic_and_reaches_target():
    prepared = C.prepare(method_with("adalora", tinit=10, tfinal=20, deltaT=1), tiny_bench())
    alloc = prepared.hooks
    alloc.on_train_start(100)
    budgets = [alloc.budget_schedule(s)[0] for s in range(100)]
    assert budgets[:11] == [alloc.init_bgt] * 11
    assert all(a >= b for a, b in zip(budgets, budgets[1:], strict=False))
    assert budgets[80] == alloc.target_bgt == 8 * len(alloc.modules)
    mid = 10 + 35  # halfway through the budgeting phase: (1/2)^3 of the excess remains
    assert budgets[mid] == int((alloc.init_bgt - alloc.target_bgt) / 8 + alloc.target_bgt)


def test_adalora_masks_exactly_the_lowest_importance_triplets():
    prepared = C.prepare(method_with("adalora", init_r=6, target_r=3), tiny_bench())
    alloc = prepared.hooks
    gen = torch.Generator().manual_seed(0)
    truth = []
    for m in alloc.modules:
        a, e, b = m.lora_A[0], m.lora_E[0], m.lora_B[0]
        with torch.no_grad():
            e.fill_(1.0)
        for p in (a, e, b):
            alloc.ema.ipt[p] = torch.rand(p.shape, generator=gen)
            alloc.ema.unc[p] = torch.rand(p.shape, generator=gen)
        s_e = (alloc.ema.ipt[e] * alloc.ema.unc[e]).view(-1)
        s_a = (alloc.ema.ipt[a] * alloc.ema.unc[a]).mean(1)
        s_b = (alloc.ema.ipt[b] * alloc.ema.unc[b]).mean(0)
        truth.append(s_e + s_a + s_b)
    budget = alloc.init_bgt - 7
    alloc.mask_to_budget(budget)
    all_scores = torch.cat(truth)
    lowest = set(torch.argsort(all_scores)[:7].tolist())
    masked = set(
        torch.nonzero(torch.cat([m.lora_E[0].view(-1) for m in alloc.modules]) == 0)
        .view(-1)
        .tolist()
    )
    assert masked == lowest


def test_adalora_training_ends_at_target_budget():
    bench = tiny_bench()
    prepared = C.prepare(
        method_with("adalora", init_r=6, target_r=2, tinit=5, tfinal=10, deltaT=2), bench
    )
    run_steps(prepared, bench, steps=40)
    alloc = prepared.hooks
    kept = sum(int(k.sum()) for k in alloc.rank_pattern)
    assert kept == alloc.target_bgt == 2 * len(alloc.modules)
    nonzero = sum(int((m.lora_E[0] != 0).sum()) for m in alloc.modules)
    assert nonzero == kept
    # Ranks are allocated unevenly where importance differs (not simply 2 per module).
    assert C.check_merge(prepared, bench) < C.MERGE_TOL


# ---------------------------------------------------------------- mixtures


def first_gated(prepared):
    from suite.methods.gated_lora import GatedLoRALinear

    return next(m for m in prepared.model.modules() if isinstance(m, GatedLoRALinear))


def first_experts(prepared):
    from suite.plugins import load_object

    cls = load_object("impl.py:ExpertsLinear", "methods/mole")
    return next(m for m in prepared.model.modules() if isinstance(m, cls))


@pytest.mark.parametrize("routing", ["dense", "top1"])
def test_mole_gates_are_the_blocks_router_probabilities_or_its_argmax(routing):
    method = method_with("mole", experts=4, routing=routing)
    module = first_experts(C.prepare(method, tiny_bench()))
    router, d_in = module.block_router, module.in_features
    with torch.no_grad():
        router.weight.zero_()
        router.bias.zero_()
        for e in range(4):
            router.weight[e, e] = 5.0  # expert e answers coordinate e
    x = torch.zeros(4, d_in)
    x[torch.arange(4), torch.tensor([2, 0, 3, 1])] = 1.0
    router.route(x)
    gates = module.gates(router.probs)
    assert gates.argmax(-1).tolist() == [2, 0, 3, 1]
    if routing == "top1":  # the released sparse path: the argmax expert, unweighted
        assert torch.equal(gates, torch.eye(4)[[2, 0, 3, 1]])
    else:  # the released dense_moe: every expert weighted by its probability
        assert torch.allclose(gates, torch.softmax(5 * x[:, :4], -1))


def test_mole_output_is_the_gated_sum_of_its_experts_loras():
    module = first_experts(C.prepare(method_with("mole", experts=3, r=2), tiny_bench()))
    torch.manual_seed(0)
    with torch.no_grad():
        module.lora_B.weight.normal_()
    x = torch.randn(5, module.in_features)
    module.block_router.route(x)
    gates = module.gates(module.block_router.probs)
    expected = torch.zeros(5, module.out_features)
    for e in range(3):
        a, b = module.lora_A.weight[2 * e : 2 * e + 2], module.lora_B.weight[:, 2 * e : 2 * e + 2]
        expected += gates[:, e : e + 1] * (x @ a.T @ b.T) * module.scaling
    assert torch.allclose(module.update(x), expected, atol=1e-5)


def test_mole_puts_experts_on_the_mlp_and_plain_lora_on_attention():
    from suite.plugins import load_object

    experts_cls = load_object("impl.py:ExpertsLinear", "methods/mole")
    bench = tiny_bench()
    # The defaults (the conformance block drops the plain LoRAs): experts on `mlp`,
    # plain LoRA on `attention`; on BERT each MLP projection is its own block (router).
    method = method_with("mole", lora_targets="attention")
    prepared = C.prepare(method, bench)
    p = method.params
    model = bench.build(0)
    mlp = C.target_shapes(model, bench, "mlp")
    attention = C.target_shapes(model, bench, "attention")
    expected = sum(p.experts * (p.r * (i + o) + i + 1) for o, i in mlp)
    expected += sum(p.r * (i + o) for o, i in attention)
    assert C.adapter_param_count(prepared) == expected
    experts = [n for n, m in prepared.model.named_modules() if isinstance(m, experts_cls)]
    assert len(experts) == len(mlp) and all("dense" in n and "attention" not in n for n in experts)
    # The balance loss after a training forward: sum_e mean(p_e) mean(onehot_e) in (0, 1].
    prepared.model.train()
    C.loss_fn(prepared.model, bench.batches[0])
    loss = prepared.hooks.extra_loss()
    assert loss is not None and loss.requires_grad
    assert 0 < float(loss.detach()) <= p.aux_loss_weight * (1 + 1e-6)
    assert prepared.hooks.extra_loss() is None  # consumed: one loss per forward


def test_smora_activates_the_top_k_ranks_and_bias_rebalances():
    rate = 0.5
    method = method_with("smora", r=8, top_k=3, bias_update_rate=rate)
    prepared = C.prepare(method, tiny_bench())
    module = first_gated(prepared)
    x = torch.randn(16, module.in_features, generator=torch.Generator().manual_seed(1))
    logits = module.router(x)
    top = torch.topk(logits, 3, dim=-1).indices.sort(-1).values
    gates = module.gates(x)
    active = torch.nonzero(gates).view(16, 3, 2)[..., 1]
    assert torch.equal(active, top)  # sigmoid is monotone and the bias starts at 0
    assert torch.allclose(gates.sum(-1), torch.full((16,), 3.0))  # renormalised to k
    assert module.scaling == method.params.alpha / 3  # alpha / k, not alpha / r
    # Every training forward moves the bias: overloaded ranks down, idle ranks up.
    module.eval()
    module(x)
    assert torch.equal(module.route_bias, torch.zeros(8))  # no update outside training
    module.train()
    module(x)
    load = torch.bincount(top.reshape(-1), minlength=8).float()
    assert torch.equal(module.route_bias.detach(), rate * torch.sign(load.mean() - load))


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


# ---------------------------------------------------------------- IncreLoRA


def test_increlora_adds_rank_to_the_most_important_modules():
    bench = tiny_bench()
    prepared = C.prepare(
        method_with("increlora", r=1, target_rank=4, top_h=2, incre_rank_num=1), bench
    )
    inc = prepared.hooks
    inc.bind_optimizer(
        torch.optim.AdamW([p for p in prepared.model.parameters() if p.requires_grad])
    )
    inc.add_reserves(inc.modules)
    importance = [0.3, 2.0, 0.1, 1.5]  # modules 1 and 3 matter most
    for m, value in zip(inc.modules, importance, strict=True):
        inc.ema.ipt[m], inc.ema.unc[m] = value, 1.0
    groups_before = len(inc.optimizer.param_groups)
    assert inc.increase() == [1, 3]
    assert [int(m.ranknum) for m in inc.modules] == [1, 2, 1, 2]
    assert [len(m.lora_E) for m in inc.modules] == [2, 3, 2, 3]  # a new reserve where rank grew
    assert all(m.lora_E[1].requires_grad for m in (inc.modules[1], inc.modules[3]))
    assert not inc.modules[0].lora_E[1].requires_grad
    # One group per increase (official increase_to_target_rank): activated lambdas + reserves.
    assert len(inc.optimizer.param_groups) == groups_before + 1
    added = inc.optimizer.param_groups[-1]["params"]
    assert {id(t) for t in added} == {
        id(t)
        for i in (1, 3)
        for t in (inc.modules[i].lora_E[1], inc.modules[i].lora_A[2], inc.modules[i].lora_B[2])
    }


def test_increlora_grows_to_target_in_the_generic_loop_and_reloads():
    from suite.train.loop import LoopConfig, train

    bench = tiny_bench()
    method = method_with(
        "increlora", r=1, target_rank=3, top_h=2, incre_rank_num=1, init_warmup=2, incre_interval=2
    )
    prepared = C.prepare(method, bench)
    inc = prepared.hooks
    chosen_log = []
    original = inc.increase

    def logged():
        scores = [float(inc.ema.score(m)) for m in inc.modules]
        chosen = original()
        top = sorted(range(len(scores)), key=lambda i: -scores[i])[: len(chosen)]
        chosen_log.append((sorted(chosen), sorted(top)))
        return chosen

    inc.increase = logged
    cfg = LoopConfig(steps=20, lr=1e-2, weight_decay=0.0, warmup_ratio=0.1, grad_clip=1.0)
    stats = train(prepared, iter(bench.batches * 20), C.loss_fn, cfg)
    assert stats.steps == 20 and all(torch.isfinite(torch.tensor(stats.losses)))
    assert inc.total_rank == inc.target == 3 * len(inc.modules)
    assert sum(int(m.ranknum) for m in inc.modules) == inc.target
    assert chosen_log and all(chosen == top for chosen, top in chosen_log)
    assert not any(m.tracking for m in inc.modules)
    assert len(inc.optimizer.param_groups) > 2
    prepared.model.eval()
    state = prepared.adapter_state()
    fresh = C.prepare(method, bench)
    fresh.load_adapter_state(state)
    assert torch.equal(C.outputs(prepared.model, bench), C.outputs(fresh.model, bench))
    assert C.check_merge(prepared, bench) < C.MERGE_TOL


def test_increlora_groups_added_mid_run_get_their_own_schedule():
    """The official --multi_lr: each group added mid-run warms up and decays on its own
    over the steps left (tests/test_golden_increlora.py checks the exact numbers against
    the reference's Multi_LambdaLR); here, through the engine's Trainer handle."""
    from suite.train import loop

    if not hasattr(loop, "TrainingDriver"):
        pytest.skip("the engine's Trainer handle (TrainingDriver) is not on this branch yet")
    bench = tiny_bench()
    method = method_with(
        "increlora", r=1, target_rank=3, top_h=2, incre_rank_num=1, init_warmup=2, incre_interval=2
    )
    prepared = C.prepare(method, bench)
    inc = prepared.hooks
    inc.group_warmup = 4  # what prepare takes from ctx.training.warmup_steps
    calls, lrs = [], []
    original_after = inc.after_optimizer_step

    def logged(step):
        original_after(step)
        lrs.append([g["lr"] for g in inc.optimizer.param_groups])

    inc.after_optimizer_step = logged
    bound = inc.bind_trainer

    def bind(trainer):
        add = trainer.add_param_group

        def spy(group, warmup_steps=0):
            calls.append((trainer.step, warmup_steps))
            add(group, warmup_steps=warmup_steps)

        trainer.add_param_group = spy
        bound(trainer)

    inc.bind_trainer = bind
    cfg = loop.LoopConfig(steps=20, lr=1e-2, weight_decay=0.0, warmup_ratio=0.1, grad_clip=1.0)
    loop.train(prepared, iter(bench.batches * 20), C.loss_fn, cfg)
    assert calls and all(w == 4 for _, w in calls)  # every new group through the handle
    assert len(calls) >= 2  # the reserves at step 0, then each increase
    # Mid-run, a new group is in its own warmup while the first groups decay ...
    s = calls[1][0]
    assert lrs[s][-1] < lrs[s][0]
    assert lrs[s + 1][len(lrs[s]) - 1] > lrs[s][len(lrs[s]) - 1]
    # ... and every group reaches zero at the run's end.
    assert all(lr == 0.0 for lr in lrs[-1])


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


def _increlora_row(tiny_plugins, tmp_path, steps: int) -> dict:
    """One IncreLoRA cell through the real runner on tiny-bert; its stored row."""
    import duckdb

    from suite.driver import plan, run_plan
    from suite.registry import Catalog
    from suite.scheduler.local import LocalExecutor
    from suite.store.store import Store

    matrix = tmp_path / f"inc{steps}.yaml"
    matrix.write_text(
        "name: inc\nmodels: [tiny-bert]\ntasks: [drug-condition]\nseeds: [0]\n"
        "methods:\n  - {method: increlora, params: {r: 1, target_rank: 4, top_h: 2, "
        "incre_rank_num: 1, init_warmup: 1, incre_interval: 1}}\n"
        f"budget: {{max_steps: {steps}, batch_size: 8}}\n"
    )
    store = Store(tmp_path / f"inc{steps}.duckdb")
    the_plan = plan(Catalog.discover([tiny_plugins]), str(matrix), store)
    run_plan(the_plan, store, LocalExecutor())
    with duckdb.connect(str(store.path), read_only=True) as con:
        return con.execute("SELECT * FROM results").df().to_dict("records")[0]


def test_the_stored_trainable_count_includes_rank_increlora_grew(tiny_plugins, tmp_path):
    # One step cannot grow (the first increase comes after init_warmup = 1 step), so that
    # row holds the count at preparation; six steps grow rank and must store more.
    start = _increlora_row(tiny_plugins, tmp_path, steps=1)
    grown = _increlora_row(tiny_plugins, tmp_path, steps=6)
    assert start["status"] == grown["status"] == "ok", (start["error"], grown["error"])
    assert grown["trainable_params"] > start["trainable_params"]
    assert grown["adapter_params"] - start["adapter_params"] == (
        grown["trainable_params"] - start["trainable_params"]
    )
