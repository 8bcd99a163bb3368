"""AdaLoRA beyond conformance (docs/methods-adaptive-mixture.md): counts and forward equal
PEFT's, the Llama-3.2-3B reference count, the cubic budget schedule, masking the
lowest-importance triplets, and a run that ends at the target budget."""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from tests.helpers import minilm_bench, tiny_bench
from tests.support.methods import method_with

LLAMA_3B_QV = [(3072, 3072), (1024, 3072)] * 28  # (d_out, d_in) of q_proj, v_proj x 28 layers


def run_steps(prepared, bench, steps: int, lr: float = 1e-2) -> list[float]:
    """The training driver at a constant lr with no clipping, cycling the bench's batches."""
    import itertools

    from suite.train.loop import LoopConfig, train

    cfg = LoopConfig(steps=steps, lr=lr, schedule="constant")
    stats = train(prepared, itertools.cycle(bench.batches), C.loss_fn, cfg)
    prepared.model.eval()
    return stats.losses


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
