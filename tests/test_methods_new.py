"""Per-equation tests for allora, loca, wara, diffora and colora (docs/methods-new.md):
what the conformance suite cannot see, on fixed tensors whose expected values are derived
by hand here, never by the implementation's own formula."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.adapters import AdapterLinear
from suite.methods.api import TrainingPlan
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, TrainingDriver
from tests.helpers import catalog, tiny_bench


def make(name: str, **params):
    return C.instantiate(resolve_method(catalog(), MethodEntry(method=name, params=params)))


def impl(name: str):
    """The implementation module of a built-in method."""
    import sys

    return sys.modules[type(make(name)).__module__]


def adapters(prepared) -> list[AdapterLinear]:
    return [m for m in prepared.model.modules() if isinstance(m, AdapterLinear)]


# --- ALLoRA ---------------------------------------------------------------------------


def allora_layer(a: torch.Tensor, b: torch.Tensor, eta: float):
    mod = impl("allora")
    base = torch.nn.Linear(a.shape[1], b.shape[0], bias=False)
    layer = mod.ALLoRALinear(base, mod.ALLoRAParams(r=a.shape[0], eta=eta))
    with torch.no_grad():
        layer.lora_A.weight.copy_(a)
        layer.lora_B.weight.copy_(b)
    return layer


def grads(layer, x: torch.Tensor, delta: torch.Tensor):
    """(dL/dx, dL/dA, dL/dB) for L = <delta, update(x)>."""
    x = x.clone().requires_grad_(True)
    (layer.update(x) * delta).sum().backward()
    return x.grad, layer.lora_A.weight.grad, layer.lora_B.weight.grad


def test_allora_gradients_on_a_case_derived_by_hand():
    # A = [3 4], B = [1; 0]: BA = [[3, 4], [0, 0]], row norms 5 and 0; eta = 1 gives
    # s = (1/sqrt(5 + 1), 1/sqrt(0 + 1)). One token x = (1, 0), upstream delta = (1, 1):
    # g = delta^T x = [[1, 0], [1, 0]], g~ = diag(s) g = [[1/sqrt 6, 0], [1, 0]],
    # grad_B = g~ A^T = [3/sqrt 6; 3], grad_A = B^T g~ = [1/sqrt 6, 0], and the input's
    # gradient is plain: delta B A = (3, 4).
    layer = allora_layer(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0], [0.0]]), eta=1.0)
    gx, ga, gb = grads(layer, torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(gb, torch.tensor([[3 / math.sqrt(6)], [3.0]]), atol=1e-6)
    assert torch.allclose(ga, torch.tensor([[1 / math.sqrt(6), 0.0]]), atol=1e-6)
    assert torch.allclose(gx, torch.tensor([[3.0, 4.0]]), atol=1e-6)


def test_allora_row_scaling_of_a_and_b_gradients_matches_the_paper_formula():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 7, generator=gen), torch.randn(5, 3, generator=gen)
    x, delta = torch.randn(2, 4, 7, generator=gen), torch.randn(2, 4, 5, generator=gen)
    eta = 1.5
    _, ga, gb = grads(allora_layer(a, b, eta), x, delta)
    # The paper's form: g = dL/d(BA) summed over tokens, rows scaled, chain rule.
    g = delta.reshape(-1, 5).T @ x.reshape(-1, 7)
    s = 1 / torch.sqrt(torch.linalg.norm(b @ a, dim=1) + 1 / eta**2)
    g_tilde = s[:, None] * g
    assert torch.allclose(gb, g_tilde @ a.T, atol=1e-5)
    assert torch.allclose(ga, b.T @ g_tilde, atol=1e-5)


def test_allora_input_gradient_and_output_equal_plain_unscaled_lora():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 7, generator=gen), torch.randn(5, 3, generator=gen)
    x, delta = torch.randn(4, 7, generator=gen), torch.randn(4, 5, generator=gen)
    layer = allora_layer(a, b, eta=2.0)
    gx, _, _ = grads(layer, x, delta)
    plain_x = x.clone().requires_grad_(True)
    plain = plain_x @ a.T @ b.T  # y = B A x, no alpha / r, no dropout
    (plain * delta).sum().backward()
    assert torch.allclose(gx, plain_x.grad, atol=1e-6)
    assert torch.allclose(layer.update(x), plain, atol=1e-6)
    assert torch.allclose(layer.delta_weight(), b @ a, atol=1e-6)


@pytest.mark.parametrize("eta", [1.0, 2.0])
def test_allora_eta_is_the_gain_at_a_zero_row(eta):
    # B = 0 (LoRA's init): every row norm is 0, so s = 1 / sqrt(1 / eta^2) = eta.
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(3, 7, generator=gen)
    x, delta = torch.randn(4, 7, generator=gen), torch.randn(4, 5, generator=gen)
    _, _, gb = grads(allora_layer(a, torch.zeros(5, 3), eta), x, delta)
    assert torch.allclose(gb, eta * (delta.T @ (x @ a.T)), atol=1e-5)


def test_allora_rejects_a_non_positive_eta():
    with pytest.raises(ValidationError, match="greater than 0"):
        make("allora", eta=0.0)


# --- LoCA -----------------------------------------------------------------------------


def test_loca_optimiser_gives_the_locations_their_own_learning_rate():
    lr, location_lr = 5e-3, 1e-4
    plan = TrainingPlan(lr=lr, steps=10, warmup_steps=0)
    bench = tiny_bench()
    prepared = C.prepare(make("loca", n_frequency=8, location_lr=location_lr), bench, training=plan)
    layers = adapters(prepared)
    driver = TrainingDriver(prepared, LoopConfig(steps=10, lr=lr, schedule="constant"))
    locations = {id(m.loca_locations) for m in layers}
    rates = {id(p): g["lr"] for g in driver.optimizer.param_groups for p in g["params"]}
    assert locations <= set(rates)
    for key, rate in rates.items():
        assert rate == pytest.approx(location_lr if key in locations else lr, rel=1e-12)
    # A location step really moves them by about location_lr (AdamW's first step is
    # lr * g / (|g| + eps)), the coefficients not at all.
    with torch.no_grad():
        for m in layers:
            m.loca_coefficients.normal_(generator=torch.Generator().manual_seed(0))
            m.set_phase(locations=True)
    before = [
        (m.loca_locations.detach().clone(), m.loca_coefficients.detach().clone()) for m in layers
    ]
    C.loss_fn(prepared.model, bench.batches[0]).backward()
    driver.optimizer_step()
    for m, (loc, coef) in zip(layers, before, strict=True):
        moved = (m.loca_locations.detach() - loc).abs()
        assert float(moved.max()) == pytest.approx(location_lr, rel=1e-3)
        assert torch.equal(m.loca_coefficients.detach(), coef)


def test_loca_reports_k_coefficients_and_trains_2k_locations_early():
    bench = tiny_bench()
    prepared = C.prepare(make("loca", n_frequency=8), bench)
    layers = adapters(prepared)
    assert len(layers) == 4  # q and v of the tiny BERT's two layers
    # After prepare both train (the optimiser must hold the locations): 3k per layer.
    assert C.adapter_param_count(prepared) == 3 * 8 * 4
    assert prepared.trainable_count() == 8 * 4
    # After training the schedule has frozen the locations; the saved adapter keeps them.
    prepared.hooks.on_train_end()
    assert C.adapter_param_count(prepared) == 8 * 4
    assert sum(n.endswith("loca_locations") for n in prepared.adapter_state()) == 4


@pytest.mark.parametrize(
    ("step", "phase"),
    [(0, False), (9, False), (10, True), (29, True), (30, False), (40, True), (89, True),
     (90, False), (100, False)],
)  # fmt: skip
def test_loca_schedule_by_hand(step, phase):
    # coef_steps 10, location_steps 20, B_s = 90: locations train at steps 10-29, 40-59,
    # 70-89 and never from 90.
    location_phase = impl("loca").location_phase
    assert location_phase(step, 90, 10, 20) is phase


def test_loca_dct_matrix_is_orthonormal_dct_ii():
    c = impl("loca").dct_matrix(4, torch.device("cpu"), torch.float64)
    # By hand: C[0, j] = 1/2, C[1, j] = sqrt(1/2) cos((2j + 1) pi / 8).
    assert torch.allclose(c[0], torch.full((4,), 0.5, dtype=torch.float64), atol=1e-7)
    row1 = torch.tensor([math.sqrt(0.5) * math.cos((2 * j + 1) * math.pi / 8) for j in range(4)])
    assert torch.allclose(c[1].float(), row1, atol=1e-6)
    assert torch.allclose(c @ c.T, torch.eye(4, dtype=torch.float64), atol=1e-6)


# --- WaRA -----------------------------------------------------------------------------

R2 = math.sqrt(2)


def test_wara_haar_transform_by_hand():
    analysis = impl("wara").haar_analysis
    low, high = analysis(torch.tensor([1.0, 3.0, 5.0, 7.0]))
    assert torch.allclose(low, torch.tensor([4 / R2, 12 / R2]))
    assert torch.allclose(high, torch.tensor([-2 / R2, -2 / R2]))
    # An odd length is zero-padded: [1, 3, 5, 0].
    low, high = analysis(torch.tensor([1.0, 3.0, 5.0]))
    assert torch.allclose(low, torch.tensor([4 / R2, 5 / R2]))
    assert torch.allclose(high, torch.tensor([-2 / R2, 5 / R2]))


@pytest.mark.parametrize("length", [6, 7])
def test_wara_dwt_idwt_reconstruct_perfectly_in_1d_and_2d(length):
    mod = impl("wara")
    x = torch.randn(3, length, length + 2, generator=torch.Generator().manual_seed(length))
    for dim in (1, 2):
        low, high = mod.haar_analysis(x, dim)
        assert torch.allclose(mod.haar_synthesis(low, high, x.shape[dim], dim), x, atol=1e-6)
        # Orthonormal: the energy is kept (the padded zero adds none).
        assert torch.allclose(low.square().sum() + high.square().sum(), x.square().sum())
    subbands = dwt2(mod, x)
    assert torch.allclose(idwt2(mod, subbands, x.shape[1], x.shape[2]), x, atol=1e-6)


def dwt2(mod, x):
    """Single-level 2-D Haar DWT over (tokens, features) = dims (1, 2): LL, LH, HL, HH."""
    lo_t, hi_t = mod.haar_analysis(x, 1)
    return [*mod.haar_analysis(lo_t, 2), *mod.haar_analysis(hi_t, 2)]


def idwt2(mod, bands, tokens: int, features: int):
    ll, lh, hl, hh = bands
    lo_t = mod.haar_synthesis(ll, lh, features, 2)
    hi_t = mod.haar_synthesis(hl, hh, features, 2)
    return mod.haar_synthesis(lo_t, hi_t, tokens, 1)


def wara_layer(d_in=7, d_out=5, r=2, seed=0):
    mod = impl("wara")
    layer = mod.WaRALinear(torch.nn.Linear(d_in, d_out), mod.WaRAParams(r=r, alpha=3.0))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_A.weight.copy_(torch.randn(r, (d_in + 1) // 2, generator=gen))
        layer.lora_B.weight.copy_(torch.randn((d_out + 1) // 2, r, generator=gen))
    return mod, layer


def test_wara_update_equals_the_figures_2d_transform_over_tokens_and_features():
    # v1's figure, literally: X (tokens x d_in) -> 2-D DWT -> B A on every subband's
    # feature axis -> 2-D IDWT (tokens x d_out), times alpha / r. Odd sizes everywhere.
    mod, layer = wara_layer()
    x = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(3))
    m = layer.lora_B.weight @ layer.lora_A.weight
    bands = [band @ m.T for band in dwt2(mod, x)]
    literal = idwt2(mod, bands, tokens=5, features=5) * (3.0 / 2)
    assert torch.allclose(layer.update(x), literal, atol=1e-5)


def haar_matrix(n: int) -> torch.Tensor:
    """The Haar analysis matrix (2 half(n) x n) written out: low rows, then high rows."""
    h = (n + 1) // 2
    mat = torch.zeros(2 * h, 2 * h)
    for j in range(h):
        mat[j, 2 * j], mat[j, 2 * j + 1] = 1 / R2, 1 / R2
        mat[h + j, 2 * j], mat[h + j, 2 * j + 1] = 1 / R2, -1 / R2
    return mat[:, :n]


def test_wara_delta_weight_is_the_block_diagonal_update_in_the_haar_basis():
    _, layer = wara_layer()
    m = layer.lora_B.weight @ layer.lora_A.weight
    h_in, h_out = haar_matrix(7), haar_matrix(5)
    # Synthesis is the transpose of analysis (orthonormal), cropped to d_out rows.
    expected = h_out.T @ torch.block_diag(m, m) @ h_in * (3.0 / 2)
    assert torch.allclose(layer.delta_weight(), expected, atol=1e-5)
    x = torch.randn(4, 7)
    assert torch.allclose(layer.update(x), x @ expected.T, atol=1e-5)


# --- DiffoRA --------------------------------------------------------------------------


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


# --- CoLoRA ---------------------------------------------------------------------------


def test_colora_rank_allocation_on_contributions_derived_by_hand():
    allocate = impl("colora").allocate_ranks
    # Budget 4 x 4 = 16, one rank each, 12 left split 3 : 1 : 0 : 4 -> 4.5, 1.5, 0, 6:
    # floors 4, 1, 0, 6 (11), the last one to the larger remainder (a tie at 0.5: the
    # earlier layer) -> 5, 1, 0, 6, plus r_min -> 6, 2, 1, 7.
    assert allocate([3.0, 1.0, 0.0, 4.0], 16, 1, [8] * 4) == [6, 2, 1, 7]
    # One layer holds all the contribution but is capped at 8; the 5 ranks over its cap
    # go to the others, uniformly as they contribute nothing: 5/3 each -> 1, 1, 1 and two
    # remainders to the earlier layers -> 8, 3, 3, 2.
    assert allocate([1.0, 0.0, 0.0, 0.0], 16, 1, [8] * 4) == [8, 3, 3, 2]
    assert allocate([0.0, 0.0, 0.0, 0.0], 16, 1, [8] * 4) == [4, 4, 4, 4]
    assert allocate([2.0, 1.0], 6, 2, [8, 8]) == [3, 3]  # 2 left, split 4/3 : 2/3 -> 1, 1
    with pytest.raises(ValueError, match="rank budget of 3 cannot give 4 layers"):
        allocate([1.0] * 4, 3, 1, [8] * 4)


class _Scalar(torch.nn.Module):
    """y = w x with one weight, w0 = 1, and no head parameters."""

    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Linear(1, 1, bias=False)
        self.head = torch.nn.Identity()
        with torch.no_grad():
            self.backbone.weight.fill_(1.0)
        self.backbone.weight.requires_grad_(False)


def test_colora_faig_on_a_case_derived_by_hand():
    # L(w) = (w x - y)^2 with x = 1, y = 0: L = w^2, dL/dw = 2w. One probe Adam step at
    # lr 0.1 from w0 = 1 moves by -lr: wT = 0.9. K = 2 points: alpha = 0 (wT) and 1/2
    # (0.95); gradients 1.8 and 1.9, mean 1.85; FAIG = |(w0 - wT) x 1.85| = 0.185.
    mod = impl("colora")
    model = _Scalar()
    batch = {"x": torch.ones(1, 1), "y": torch.zeros(1, 1)}

    def loss_fn(m, b):
        return (m.backbone(b["x"]) - b["y"]).pow(2).sum()

    p = mod.CoLoRAParams(probe_steps=1, probe_lr=0.1, ig_steps=2)
    (c,) = mod.faig_contributions(model, [model.backbone.weight], [batch], loss_fn, p)
    assert c == pytest.approx(0.185, rel=1e-5)
    # The probe leaves no trace: the weight, its flag and the mode are restored.
    assert float(model.backbone.weight) == 1.0 and not model.backbone.weight.requires_grad


def test_colora_prepare_allocates_lora_s_budget_by_measured_contribution():
    bench = tiny_bench()
    base = bench.build(0)
    prepared = C.prepare(make("colora", r=4, probe_steps=2, ig_steps=2), bench)
    layers = adapters(prepared)
    ranks = [m.r for m in layers]
    assert sum(ranks) == 4 * len(layers)  # LoRA's budget, re-split
    allocate = impl("colora").allocate_ranks
    assert ranks == allocate([m.contribution for m in layers], 16, 1, [32] * 4)
    assert len(set(ranks)) > 1 and all(m.contribution > 0 for m in layers)
    for m in layers:
        assert m.lora_A.weight.shape == (m.r, 32) and m.scaling == pytest.approx(16 / m.r)
    # The probe restored every base weight and the head.
    original = base.state_dict()
    for name, tensor in prepared.model.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, original[name.replace(".base.", ".")]), name


def test_colora_adapter_with_other_ranks_loads_into_a_fresh_model():
    bench = tiny_bench()
    source = C.prepare(make("colora", r=4, probe_steps=2, ig_steps=2), bench)
    layer = adapters(source)[0]
    layer.resize(layer.r + 3)  # an allocation that differs from the fresh model's
    C.perturb(source.model)
    target = C.prepare(make("colora", r=4, probe_steps=2, ig_steps=2), bench)
    target.load_adapter_state(source.adapter_state())
    assert adapters(target)[0].r == layer.r
    assert torch.equal(C.outputs(source.model, bench), C.outputs(target.model, bench))


def test_colora_needs_training_batches():
    from suite.methods.api import PrepareContext

    bench = tiny_bench()
    ctx = PrepareContext(preset=bench.preset, seed=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="contribution on training batches"):
        make("colora").prepare(bench.build(0), ctx)


def test_allora_evaluates_as_plain_lora_without_autograd():
    gen = torch.Generator().manual_seed(4)
    a, b, x = torch.randn(3, 7, generator=gen), torch.randn(5, 3, generator=gen), torch.randn(4, 7)
    layer = allora_layer(a, b, eta=2.0)
    with torch.inference_mode():
        assert torch.allclose(layer.update(x), x @ a.T @ b.T, atol=1e-6)
