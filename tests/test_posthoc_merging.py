"""Merging rules: weighted sums, TIES (against Hugging Face PEFT, live), LoRA-LEGO and RMM
(per equation of the project's reading)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from suite.paths import SOURCE_ROOT
from suite.plugins import load_object
from suite.posthoc.merging import weighted_sum


def _own(method: str, file: str, *names: str) -> tuple:
    """A merge method's own maths, from its folder (posthoc/<method>/<file>)."""
    return tuple(load_object(f"{file}:{n}", SOURCE_ROOT / "posthoc" / method) for n in names)


ties, ties_model, trim = _own("ties", "ties.py", "ties", "ties_model", "trim")
(lego_merge,) = _own("lora-lego", "lego.py", "lego_merge")
factor_positions, positions_to_factors, rmm_rebuild, rmm_store = _own(
    "rmm", "rmm.py", "factor_positions", "positions_to_factors", "rmm_rebuild", "rmm_store"
)


def _sparse(shape, density, gen, taken=None):
    dense = torch.randn(shape, generator=gen)
    keep = torch.rand(shape, generator=gen) < density
    if taken is not None:
        keep &= ~taken
    return dense * keep, keep


def test_task_arithmetic_with_scale_one_on_disjoint_sparse_deltas_is_their_sum():
    gen = torch.Generator().manual_seed(0)
    a, taken = _sparse((32, 48), 0.05, gen)
    b, _ = _sparse((32, 48), 0.05, gen, taken)
    assert not ((a != 0) & (b != 0)).any()
    merged = weighted_sum([a, b], [1.0, 1.0])
    assert torch.equal(merged, a + b)
    # and on the overlap-free support every entry is exactly one task's value
    assert torch.equal(merged[a != 0], a[a != 0]) and torch.equal(merged[b != 0], b[b != 0])


def test_the_task_arithmetic_method_at_scale_one_adds_disjoint_sparse_deltas_exactly():
    """Through the plugin (posthoc/task-arithmetic, its YAML's default scale 1), on
    several tensors: the one update it hands every task is a + b, bit for bit."""
    from suite.plugins import load_object
    from suite.posthoc.api import MergeContext, TaskUpdate
    from tests.helpers import catalog

    entry = catalog().posthoc.get("task-arithmetic")
    cls = load_object(entry.spec.implementation, entry.folder)
    method = cls(cls.Params.model_validate(entry.spec.params))
    assert method.params.scale == 1.0
    gen = torch.Generator().manual_seed(1)
    first, second = {}, {}
    for name, shape in (("w0", (16, 24)), ("w1", (24, 8)), ("b0", (16,))):
        first[name], taken = _sparse(shape, 0.1, gen)
        second[name], _ = _sparse(shape, 0.1, gen, taken)
    merged = method.merge([TaskUpdate("t1", first), TaskUpdate("t2", second)], MergeContext(seed=0))
    for index in (0, 1):
        update = merged.update_for(index)
        assert set(update) == set(first)
        for name in first:
            assert torch.equal(update[name], first[name] + second[name]), name


@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("weights", [[1.0, 1.0], [0.7, 0.3], [1.0, 0.5, 0.25]])
def test_ties_matches_peft_merge_utils(density, weights):
    from peft.utils.merge_utils import ties as peft_ties

    gen = torch.Generator().manual_seed(1)
    tensors = [torch.randn(24, 40, generator=gen) for _ in weights]
    ours = ties(tensors, weights, density)
    theirs = peft_ties(tensors, torch.tensor(weights), density, "total")
    assert torch.allclose(ours, theirs, atol=1e-7), float((ours - theirs).abs().max())


def test_ties_matches_peft_add_weighted_adapter_on_lora_deltas():
    """PEFT's `ties_svd` merges the LoRAs' delta weights with `ties` and refactors by SVD;
    at full rank that reconstruction is exact, so its merged delta is TIES of the deltas."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(20, 12))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["0"]), "a")
    model.add_adapter("b", LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        for name in ("a", "b"):
            layer.lora_B[name].weight.normal_(0, 0.3)
    deltas = [layer.get_delta_weight(n) for n in ("a", "b")]
    model.add_weighted_adapter(
        ["a", "b"], [0.8, 0.6], "m", combination_type="ties_svd", density=0.3, svd_rank=12
    )
    theirs = layer.get_delta_weight("m")
    ours = ties(deltas, [0.8, 0.6], 0.3)
    assert torch.allclose(ours, theirs, atol=1e-5), float((ours - theirs).abs().max())


def test_trim_keeps_the_largest_share_and_zeroes_the_rest():
    x = torch.tensor([[0.1, -5.0, 2.0], [-0.3, 4.0, 0.0]])
    assert torch.equal(trim(x, 0.5), torch.tensor([[0.0, -5.0, 2.0], [0.0, 4.0, 0.0]]))


def test_ties_elects_the_sign_of_the_total_and_averages_only_agreeing_values():
    a = torch.tensor([3.0, -1.0, 2.0, 0.0])
    b = torch.tensor([-1.0, -2.0, 4.0, 5.0])
    merged = ties([a, b], [1.0, 1.0], density=1.0)
    # entry 0: total +2 -> only a's 3; entry 1: both negative -> mean -1.5;
    # entry 2: mean 3; entry 3: a's zero carries no sign -> b's 5 alone
    assert torch.equal(merged, torch.tensor([3.0, -1.5, 3.0, 5.0]))


def test_ties_model_trims_over_the_whole_task_vector():
    gen = torch.Generator().manual_seed(2)
    task = {"x": torch.randn(10, 10, generator=gen), "y": 10 * torch.randn(5, generator=gen)}
    merged = ties_model([task], [1.0], density=0.05)  # 5 of 105 entries survive
    kept = sum(int((v != 0).sum()) for v in merged.values())
    assert kept == 5
    assert int((merged["y"] != 0).sum()) == 5  # the big entries all live in y


def _lora(gen, m=12, n=20, r=4, scale=0.5):
    return torch.randn(m, r, generator=gen) * scale, torch.randn(r, n, generator=gen)


def test_lego_with_every_unit_its_own_cluster_is_the_sum_of_the_loras():
    """Concatenation-summation equivalence: k = all units, no rescaling."""
    gen = torch.Generator().manual_seed(3)
    factors = [_lora(gen), _lora(gen)]
    b, a = lego_merge(factors, k=8, generator=torch.Generator().manual_seed(0),
                      reweight_params=False, reweight_output=False)  # fmt: skip
    expected = sum(bt @ at for bt, at in factors)
    assert torch.allclose(b @ a, expected, atol=1e-5)


def test_lego_parameter_reweighting_restores_the_members_mean_norm():
    gen = torch.Generator().manual_seed(4)
    factors = [_lora(gen), _lora(gen), _lora(gen)]
    b, a = lego_merge(factors, k=3, generator=torch.Generator().manual_seed(0),
                      reweight_output=False)  # fmt: skip
    units = torch.cat([torch.cat([bt.T, at], dim=1) for bt, at in factors])
    centroid_norms = torch.cat([b.T, a], dim=1).norm(dim=1)
    # every unit norm lies between the smallest and largest member norm of its cluster
    assert float(centroid_norms.min()) >= float(units.norm(dim=1).min()) - 1e-5
    assert float(centroid_norms.max()) <= float(units.norm(dim=1).max()) + 1e-5


def test_lego_output_reweighting_scales_the_update_by_sqrt_rank_over_k():
    gen = torch.Generator().manual_seed(5)
    factors = [_lora(gen), _lora(gen)]
    g = torch.Generator
    plain = lego_merge(factors, 2, g().manual_seed(0), reweight_params=False, reweight_output=False)
    scaled = lego_merge(factors, 2, g().manual_seed(0), reweight_params=False)
    ratio = math.sqrt(4 / 2)
    assert torch.allclose(scaled[0] @ scaled[1], ratio * plain[0] @ plain[1], atol=1e-5)


def test_rmm_with_two_tasks_and_one_basis_vector_is_lossless():
    """Centred, two tasks span a line per position: p = 1 rebuilds both exactly."""
    gen = torch.Generator().manual_seed(6)
    factors = [_lora(gen), _lora(gen)]
    store = rmm_store(factor_positions(factors), p=1)
    for t, (b, a) in enumerate(factors):
        rb, ra = positions_to_factors(rmm_rebuild(store, t), b.shape[0])
        assert torch.allclose(rb, b, atol=1e-5) and torch.allclose(ra, a, atol=1e-5)


def test_rmm_basis_is_the_eckart_young_optimum_per_position():
    gen = torch.Generator().manual_seed(7)
    factors = [_lora(gen) for _ in range(3)]
    x = factor_positions(factors)
    store = rmm_store(x, p=1)
    rebuilt = torch.stack([rmm_rebuild(store, t) for t in range(3)], dim=-1)
    for j in range(0, x.shape[0], 7):
        centred = x[j] - x[j].mean(dim=1, keepdim=True)
        u, s, vh = torch.linalg.svd(centred)
        best = x[j].mean(dim=1, keepdim=True) + s[0] * u[:, :1] @ vh[:1]
        assert torch.allclose(rebuilt[j], best, atol=1e-5)
    # storage per position: mean r + basis r p + coefficients p T
    r, p, tasks = 4, 1, 3
    per_position = sum(v[0].numel() for v in store.values())
    assert per_position == r + r * p + p * tasks
