"""Per-equation tests for DiffoRA (docs/methods-new.md): what the conformance suite cannot
see, on fixed tensors whose expected values are derived by hand here, never by the
implementation's own formula."""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from suite.train.loop import LoopConfig
from tests.helpers import tiny_bench
from tests.support.methods import adapters, impl, make


def diffora_prepared(holdout, loss_fn, **params):
    """DiffoRA on the tiny bench (4 target modules) with the given held-out stream."""
    from suite.methods.api import PrepareContext
    from suite.train.prepare import prepare_model

    bench = tiny_bench()
    ctx = PrepareContext(
        preset=bench.preset,
        seed=0,
        device=torch.device("cpu"),
        train_batches=lambda: iter(bench.batches * 100),
        loss_fn=loss_fn,
        holdout_batches=holdout,
    )
    method = make("diffora", r=4, **params)
    return bench, prepare_model(method, bench.build(0), ctx).prepared


def test_diffora_outer_step_sees_only_held_out_batches():
    from suite.train.loop import train

    bench = tiny_bench()
    held = [{**b, "labels": b["labels"].flip(0)} for b in bench.batches]  # distinct objects
    held_ids, seen_by_outer, seen_by_inner = {id(b) for b in held}, [], []

    def outer_loss(model, batch):
        seen_by_outer.append(id(batch))
        return C.loss_fn(model, batch)

    def inner_loss(model, batch):
        seen_by_inner.append(id(batch))
        return C.loss_fn(model, batch)

    _, prepared = diffora_prepared(lambda: iter(held * 50), outer_loss, search_fraction=0.5)
    train(prepared, iter(bench.batches * 50), inner_loss, LoopConfig(steps=8, lr=1e-2))
    # One outer step per training step of the search phase (half of 8), held-out only.
    assert len(seen_by_outer) == 4
    assert set(seen_by_outer) <= held_ids
    assert not set(seen_by_inner) & held_ids
    assert prepared.hooks.decided


def test_diffora_refuses_to_search_without_held_out_batches():
    from suite.train.loop import train

    bench, prepared = diffora_prepared(None, C.loss_fn)
    with pytest.raises(ValueError, match="held-out training batches"):
        train(prepared, iter(bench.batches * 5), C.loss_fn, LoopConfig(steps=2, lr=1e-2))


def test_diffora_outer_step_is_an_adam_step_on_the_logits_alone():
    bench, prepared = diffora_prepared(lambda: iter(bench_batches() * 5), C.loss_fn)
    hooks, layers = prepared.hooks, adapters(prepared)
    hooks.bind_trainer(SimpleTrainer(10))
    C.perturb(prepared.model)  # B = 0 would give the gates no gradient
    logits = [m.gate_logit for m in layers]
    for t in logits:
        t.requires_grad_(True)
    g = torch.autograd.grad(C.loss_fn(prepared.model, bench.batches[0]), logits)
    for t in logits:
        t.requires_grad_(False)
    weights = [m.lora_B.weight.detach().clone() for m in layers]
    hooks.outer_step()  # its first held-out batch is bench.batches[0]
    for m, grad, w in zip(layers, g, weights, strict=True):
        # Adam's first step from 0 (weight decay adds nothing at 0): -lr g / (|g| + eps).
        expected = -3e-4 * grad / (grad.abs() + 1e-8)
        assert torch.allclose(m.gate_logit.detach(), expected, rtol=1e-4, atol=1e-12)
        assert float(m.gate_logit.abs()) > 0
        assert not m.gate_logit.requires_grad and m.gate_logit.grad is None
        assert torch.equal(m.lora_B.weight.detach(), w) and m.lora_B.weight.grad is None


def bench_batches():
    return tiny_bench().batches


class SimpleTrainer:
    """The Trainer handle's fields the hooks read, for driving them by hand."""

    def __init__(self, total_steps: int):
        self.total_steps, self.optimizer = total_steps, None


@pytest.mark.parametrize(
    ("rho", "modules", "kept"), [(0.5, 4, 2), (0.75, 4, 3), (0.3, 4, 1), (0.5, 12, 6), (0.3, 12, 4)]
)
def test_diffora_keeps_round_rho_times_modules(rho, modules, kept):
    mod = impl("diffora")
    assert mod.keep_count(rho, modules) == kept
    # By hand: logits 0.3, -1, 0.3, 2 keep the largest (module 3), then the tie at 0.3
    # goes to the earlier module (0).
    assert mod.select([0.3, -1.0, 0.3, 2.0], 2) == [0, 3]


def test_diffora_discretisation_keeps_the_largest_gates_and_their_weights():
    bench, prepared = diffora_prepared(lambda: iter(bench_batches() * 5), C.loss_fn, rho=0.5)
    layers = adapters(prepared)
    C.perturb(prepared.model)
    with torch.no_grad():
        for m, logit in zip(layers, [0.3, -1.0, 0.3, 2.0], strict=True):
            m.gate_logit.fill_(logit)
    before = C.outputs(prepared.model, bench)
    kept_deltas = {j: layers[j].delta_weight().detach().clone() for j in (0, 3)}
    assert prepared.hooks.discretise() == [0, 3]
    # Weight sharing: the kept modules' function is unchanged (searched A, B and gate).
    for j, delta in kept_deltas.items():
        assert torch.allclose(layers[j].delta_weight(), delta)
    for j in (1, 2):
        assert layers[j].dropped and not torch.any(layers[j].delta_weight())
    x = torch.randn(3, layers[1].in_features)
    assert torch.equal(layers[1](x), layers[1].base(x))
    assert not torch.allclose(C.outputs(prepared.model, bench), before)  # 1, 2 are gone
    # The count after the selection: r (d_in + d_out) per kept module, by hand 4 x 64 x 2.
    assert C.adapter_param_count(prepared) == 4 * (32 + 32) * 2


def test_diffora_count_after_training_is_r_times_sizes_times_selected():
    from suite.train.loop import train

    bench, prepared = diffora_prepared(lambda: iter(bench_batches() * 50), C.loss_fn)
    train(prepared, iter(bench.batches * 50), C.loss_fn, LoopConfig(steps=8, lr=1e-2))
    states = [int(m.gate_state) for m in adapters(prepared)]
    assert sorted(states) == [1, 1, 2, 2]  # round(0.5 x 4) kept, the rest dropped
    assert C.adapter_param_count(prepared) == 4 * (32 + 32) * 2
