"""What the conformance suite cannot see for nola, lora-xs, lora-sb, loldu, svfit, salt,
hydra (and the others of docs/methods-lowrank-2.md): where their frozen factors come
from, seeds that regenerate bases, exact reconstructions, merged-weight formulas."""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.adapters import AdapterLinear
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, tiny_bench


def make(name: str, **params):
    return C.instantiate(resolve_method(catalog(), MethodEntry(method=name, params=params)))


def adapters(prepared) -> list[AdapterLinear]:
    return [m for m in prepared.model.modules() if isinstance(m, AdapterLinear)]


def query(model):
    return model.backbone.encoder.layer[0].attention.self.query


def base_query_weight(bench) -> torch.Tensor:
    return query(bench.build(0)).weight.detach().clone()


# --- NOLA -----------------------------------------------------------------------------


def test_nola_regenerates_identical_bases_from_its_stored_seed():
    bench = tiny_bench()
    layers = adapters(C.prepare(make("nola", num_basis_A=16, num_basis_B=8, r=4), bench))
    first = layers[0]
    saved = [first.lora_A0.clone(), first.bases_A.clone(), first.bases_B.clone()]
    first.rebuild()
    for before, after in zip(saved, [first.lora_A0, first.bases_A, first.bases_B], strict=True):
        assert torch.equal(before, after)
    # Every factor of every layer draws from its own seed, so the bases differ.
    seeds = [int(s) for m in layers for s in m.nola_seed]
    assert len(set(seeds)) == len(seeds) == 3 * len(layers)
    assert not torch.equal(layers[0].bases_A, layers[1].bases_A)


def test_nola_regenerated_bases_equal_the_resident_ones():
    bench = tiny_bench()
    kept = adapters(C.prepare(make("nola", num_basis_A=16, num_basis_B=8, r=4), bench))
    regen = adapters(
        C.prepare(make("nola", num_basis_A=16, num_basis_B=8, r=4, regenerate=True), bench)
    )
    assert not hasattr(regen[0], "bases_A")
    for a, b in zip(kept, regen, strict=True):
        C.perturb(a)
        b.load_state_dict(a.state_dict(), strict=False)
        assert torch.allclose(a.delta_weight(), b.delta_weight(), atol=1e-6)


def test_nola_bases_are_uniform_scaled_and_the_adapter_starts_at_zero():
    bench = tiny_bench()
    layer = adapters(C.prepare(make("nola", num_basis_A=16, num_basis_B=64, r=4), bench))[0]
    assert layer.bases_A.abs().max() <= 1 / 16**0.5  # uniform[-1, 1] / sqrt(k_A)
    assert layer.bases_B.abs().max() <= 1 / 64**0.5
    assert layer.bases_A.abs().max() > 0.9 / 16**0.5
    assert torch.count_nonzero(layer.delta_weight()) == 0
    assert layer.coef_A.numel() + layer.coef_B.numel() == 80


def test_nola_saved_adapter_carries_seeds_and_coefficients_only():
    prepared = C.prepare(make("nola", num_basis_A=16, num_basis_B=16, r=4), tiny_bench())
    state = prepared.adapter_state()
    kinds = {name.rpartition(".")[2] for name in state if "head" not in name}
    # nola_cuda: whether the bases came from a CUDA generator (its stream differs from CPU's).
    assert kinds == {"coef_A", "coef_B", "nola_seed", "nola_cuda"}


# --- LoRA-XS and LoRA-SB --------------------------------------------------------------


def test_lora_xs_factors_come_from_the_truncated_svd_of_w0():
    bench = tiny_bench()
    layer = query(C.prepare(make("lora-xs", r=4), bench).model)
    w0 = base_query_weight(bench)
    u, s, vh = torch.linalg.svd(w0, full_matrices=False)
    assert torch.allclose(layer.lora_B, u[:, :4], atol=1e-5)
    assert torch.allclose(layer.lora_A, s[:4, None] * vh[:4], atol=1e-5)
    assert torch.equal(layer.base.weight, w0)  # W0 itself is not modified
    assert layer.lora_R.shape == (4, 4) and 0 < layer.lora_R.abs().max() < 1e-4
    assert layer.scaling == 16 / 4


def test_lora_xs_with_zero_init_is_exactly_the_base_model():
    assert C.check_identity(make("lora-xs", r=4, init_std=0.0), tiny_bench()) == 0.0


def test_lora_sb_init_is_the_best_rank_r_approximation_of_the_sign_step():
    bench = tiny_bench()
    prepared = C.prepare(make("lora-sb", r=4, grad_samples=6, init_step=1e-3), bench)
    layer = query(prepared.model)
    model = bench.build(0)
    w = query(model).weight
    w.requires_grad_(True)
    model.train()
    first, second = bench.batches[0], {k: v[:2] for k, v in bench.batches[1].items()}
    grad = torch.zeros_like(w)
    for batch in (first, second):
        model.zero_grad()
        (C.loss_fn(model, batch) / len(batch["labels"])).backward()
        grad += w.grad
    target = -1e-3 * torch.sign(grad)
    u, s, vh = torch.linalg.svd(target, full_matrices=False)
    best = (u[:, :4] * s[:4]) @ vh[:4]
    assert torch.allclose(layer.delta_weight(), best, atol=1e-6)
    assert layer.scaling == 1.0
    assert torch.equal(layer.base.weight, w.detach())  # W0 is not compensated
    assert all(p.grad is None for p in prepared.model.parameters())


# --- LoLDU ----------------------------------------------------------------------------


def test_loldu_ldu_reconstructs_w0_and_the_merged_weight_is_w0_at_init():
    from suite.methods.lowrank_common import ldu

    bench = tiny_bench()
    w0 = base_query_weight(bench)
    perm, lower, diag, upper = ldu(w0)
    assert torch.allclose(((lower * diag) @ upper)[perm], w0, atol=1e-5)
    assert torch.allclose(torch.diagonal(upper), torch.ones(32))
    layer = query(C.prepare(make("loldu", r=4), bench).model)
    assert torch.allclose(layer.vector_z, diag[:4])
    assert float(layer.scaling_factor.detach()) == pytest.approx(1 / 4)
    assert torch.allclose(layer.merged_weight(), w0, atol=1e-6)


def test_loldu_trains_z_only_by_default_and_the_scale_as_an_option():
    bench = tiny_bench()
    shapes = C.target_shapes(bench.build(0), bench, "qv")
    for params, per_layer in (({}, 4), ({"train_scale": True}, 5)):
        method = make("loldu", r=4, **params)
        prepared = C.prepare(method, bench)
        assert C.adapter_param_count(prepared) == method.expected_trainable_params(shapes)
        assert C.adapter_param_count(prepared) == per_layer * 4


# --- SVFit ----------------------------------------------------------------------------


def test_svfit_trains_top_singular_values_of_w0():
    bench = tiny_bench()
    layer = query(C.prepare(make("svfit", r=5), bench).model)
    w0 = base_query_weight(bench)
    u, s, vh = torch.linalg.svd(w0, full_matrices=False)
    assert torch.allclose(layer.sigma, s[:5], atol=1e-5)
    with torch.no_grad():
        layer.sigma.mul_(2.0)
    residual = w0 - (u[:, :5] * s[:5]) @ vh[:5]
    expected = residual + (u[:, :5] * (2 * s[:5])) @ vh[:5]
    assert torch.allclose(layer.merged_weight(), expected, atol=1e-5)


def test_svfit_energy_rule_keeps_the_values_holding_over_the_share():
    """Hand table: sigma = (4, 2, 1, 1). sigma^2 = (16, 4, 1, 1) / 22 -> cumulative
    .727, .909, .955, 1; sigma / 8 -> .5, .75, .875, 1 ("over": strictly above)."""
    from suite.methods.lowrank_common import energy_rank

    s = torch.tensor([4.0, 2.0, 1.0, 1.0])
    assert [energy_rank(s, e) for e in (0.7, 0.9, 0.95, 0.99, 1.0)] == [1, 2, 3, 4, 4]
    assert [energy_rank(s, e, "sigma") for e in (0.5, 0.8, 0.99)] == [2, 3, 4]
    # A layer built on W = diag(4, 2, 1, 1) keeps r = 3 at 95% of sigma^2.
    base = torch.nn.Linear(4, 4)
    with torch.no_grad():
        base.weight.copy_(torch.diag(s))
    params = make("svfit", energy=0.95).params
    layer = type(query(C.prepare(make("svfit", r=2), tiny_bench()).model))(base, params)
    assert torch.equal(layer.sigma.detach(), torch.tensor([4.0, 2.0, 1.0]))


def test_svfit_default_rank_follows_99_percent_of_sigma_squared():
    bench = tiny_bench()
    layer = query(C.prepare(make("svfit"), bench).model)
    s = torch.linalg.svdvals(base_query_weight(bench)).double()
    share = (s**2).cumsum(0) / (s**2).sum()
    want = int((share <= 0.99).sum()) + 1  # the first r whose share exceeds 0.99
    assert layer.sigma.numel() == want
    assert share[want - 1] > 0.99 and (want == 1 or share[want - 2] <= 0.99)
    with pytest.raises(ValueError, match="spectrum"):
        make("svfit").expected_trainable_params([(32, 32)])


# --- SALT -----------------------------------------------------------------------------


def test_salt_structure_and_relu_on_the_modified_spectrum():
    bench = tiny_bench()
    layer = query(C.prepare(make("salt", ratio=0.25, r_lora=3), bench).model)
    assert layer.rank == 8  # int(32 * 0.25)
    assert layer.trainable_X.shape == (24, 3) and layer.trainable_Y.shape == (3, 24)
    assert torch.count_nonzero(layer.trainable_Y) == 0
    C.perturb(layer)
    with torch.no_grad():
        layer.trainable_shift_B[0] = -1e3  # drives the top singular value negative
    w0 = base_query_weight(bench)
    u, s, vh = torch.linalg.svd(w0, full_matrices=False)
    top = layer.trainable_scale_A * s[:8] + layer.trainable_shift_B
    new_s = torch.diag(s).clone()
    new_s[:8, :8] = torch.diag(top)
    new_s[8:, 8:] += layer.trainable_X @ layer.trainable_Y
    expected = u @ torch.relu(new_s) @ vh
    assert torch.allclose(layer.merged_weight(), expected, atol=1e-5)
    assert torch.relu(layer.modified_spectrum())[0, 0] == 0


# --- Hydra ----------------------------------------------------------------------------


def _hydra_layer():
    bench = tiny_bench()
    prepared = C.prepare(make("hydra", r_par=3, r_seq=2), bench)
    C.perturb(prepared.model)
    return prepared, prepared.model.backbone.encoder.layer[0].output.dense, bench


def test_hydra_merged_weight_is_w0_plus_s_parallel_plus_sequential_times_w0():
    prepared, layer, _ = _hydra_layer()
    (ap, bp), (as_, bs) = layer.hydra_par, layer.hydra_seq
    w0, b0 = layer.base.weight.detach().clone(), layer.base.bias.detach().clone()
    s = layer.scaling
    expected_w = w0 + s * (bp.weight @ ap.weight + bs.weight @ as_.weight @ w0)
    expected_b = b0 + s * (
        bp.weight @ ap.bias + bp.bias + bs.weight @ (as_.weight @ b0 + as_.bias) + bs.bias
    )
    prepared.merge()
    assert torch.allclose(layer.base.weight, expected_w, atol=1e-6)
    assert torch.allclose(layer.base.bias, expected_b, atol=1e-6)
    prepared.unmerge()
    assert torch.equal(layer.base.weight, w0) and torch.equal(layer.base.bias, b0)


def test_hydra_merges_a_bias_free_linear_by_adding_a_bias():
    _, layer, _ = _hydra_layer()
    method = make("hydra", r_par=3, r_seq=2)
    base = torch.nn.Linear(8, 6, bias=False)
    hydra = type(layer)(base, method.params, torch.Generator().manual_seed(0))
    C.perturb(hydra)
    x = torch.randn(5, 8)
    with torch.no_grad():
        unmerged = hydra(x)
        hydra.merge()
        merged = hydra(x)
        hydra.unmerge()
    assert torch.allclose(merged, unmerged, atol=1e-6)
    assert base.bias is None


# --- LoRA options checked against PEFT ------------------------------------------------


@pytest.mark.parametrize("rslora", [False, True])
def test_lora_pissa_init_matches_peft_pissa_init(rslora):
    from peft import LoraConfig
    from peft.tuners.lora.layer import Linear as PeftLinear

    bench = tiny_bench()
    ours = query(C.prepare(make("lora", r=4, alpha=8, init="pissa", rslora=rslora), bench).model)
    base = query(bench.build(0))
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights="pissa", use_rslora=rslora)
    peft = PeftLinear(
        base, "default", config, r=4, lora_alpha=8, init_lora_weights="pissa", use_rslora=rslora
    )
    assert ours.scaling == peft.scaling["default"]
    assert torch.allclose(ours.lora_A.weight, peft.lora_A["default"].weight, atol=1e-5)
    assert torch.allclose(ours.lora_B.weight, peft.lora_B["default"].weight, atol=1e-5)
    assert torch.allclose(ours.base.weight, peft.get_base_layer().weight, atol=1e-6)
