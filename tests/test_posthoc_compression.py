"""Compression rules: magnitude per row, N:M patterns, compact storage, Sparse Model Soups'
rules, and the calibration slice (training split only)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from suite.paths import SOURCE_ROOT
from suite.plugins import load_object
from suite.posthoc.calibrate import block_of, group_blocks
from suite.posthoc.compression import compact_bytes, pattern_holds
from suite.posthoc.pruning import nm_mask, parse_pattern, row_mask
from tests.helpers import catalog

# Sparse Model Soups' rules live in its own folder (posthoc/sparse-model-soups/soups.py).
magnitude_masks, phase_share, uniform_soup = (
    load_object(f"soups.py:{name}", SOURCE_ROOT / "posthoc" / "sparse-model-soups")
    for name in ("magnitude_masks", "phase_share", "uniform_soup")
)


def _method(name: str, **params):
    entry = catalog().posthoc.get(name)
    cls = load_object(entry.spec.implementation, entry.folder)
    return cls(cls.Params.model_validate({**entry.spec.params, **params}))


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Module()
        self.backbone.layer = nn.ModuleList([nn.Linear(24, 16), nn.Linear(16, 24)])


def _ctx(model):
    named = [(f"layer.{n}", m) for n, m in model.backbone.layer.named_children()]
    return SimpleNamespace(resolve=lambda t: named, calibration=None, preset=None, seed=0)


def test_magnitude_at_50_percent_zeroes_exactly_half_of_each_targeted_row():
    model = _Toy()
    dense = {n: m.weight.detach().clone() for n, m in model.backbone.layer.named_children()}
    result = _method("magnitude", sparsity=0.5).compress(model, _ctx(model))
    for name, m in model.backbone.layer.named_children():
        w = m.weight.detach()
        zeros = (w == 0).sum(dim=1)
        assert torch.equal(zeros, torch.full_like(zeros, w.shape[1] // 2)), name
        # the zeroed ones are the smallest |w| of their row
        kept_min = torch.where(w != 0, dense[name].abs(), torch.inf).min(dim=1).values
        pruned_max = torch.where(w == 0, dense[name].abs(), -torch.inf).max(dim=1).values
        assert bool((pruned_max <= kept_min).all()), name
    assert result.pruned * 2 == result.total and result.level_label == "50%"


def test_two_four_keeps_exactly_two_of_every_four():
    model = _Toy()
    result = _method("magnitude", pattern="2:4").compress(model, _ctx(model))
    for _, m in model.backbone.layer.named_children():
        groups = (m.weight.detach().reshape(m.weight.shape[0], -1, 4) != 0).sum(dim=-1)
        assert bool((groups == 2).all())
        assert pattern_holds(m.weight.detach(), (2, 4))
    assert result.level == 0.5 and result.level_label == "2:4"
    assert set(result.sparse.values()) == {(2, 4)}


def test_nm_mask_keeps_the_largest_of_each_group():
    metric = torch.tensor([[1.0, 4.0, 3.0, 2.0, 8.0, 5.0, 7.0, 6.0]])
    mask = nm_mask(metric, 2, 4)
    assert mask.tolist() == [[True, False, False, True, False, True, False, True]]
    assert row_mask(metric, 0.25).sum() == 2


def test_an_nm_pattern_needs_its_group_size_to_divide_the_inputs():
    with pytest.raises(ValueError, match="divisible by 4"):
        nm_mask(torch.rand(3, 6), 2, 4)
    with pytest.raises(ValueError, match="n:m"):
        parse_pattern("4:2")


def test_pattern_check_catches_a_broken_group():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 3.0, 4.0, 5.0, 0.0]])
    assert not pattern_holds(w, (2, 4)) and pattern_holds(w, (3, 4))


def test_compact_bytes_count_values_and_index_bits():
    w = torch.zeros(8, 16)
    w[:, :4] = 1.0  # 32 nonzeros of 128
    # unstructured: 32 values x 4 bytes + min(bitmask 16 bytes, 32 int32 indices)
    assert compact_bytes(w, None) == 32 * 4 + 16
    # 2:4: half the values + ceil(log2 C(4, 2)) = 3 bits per group of 4
    assert compact_bytes(w, (2, 4)) == 64 * 4 + math.ceil(32 * 3 / 8)


def test_dsnot_skips_the_mlp_sublayers_by_default():
    rule = _method("dsnot").rule()
    assert rule.method == "dsnot" and not rule.dsnot.same_sign
    assert rule.dsnot.update_threshold == 0.1 and rule.dsnot.max_cycles == 50
    preset = catalog().models.get("minilm-l6").spec
    skip = _method("dsnot").skip(SimpleNamespace(preset=preset))
    assert skip("encoder.layer.0.intermediate.dense")
    assert skip("encoder.layer.3.output.dense")
    assert not skip("encoder.layer.0.attention.output.dense")
    assert not skip("encoder.layer.0.attention.self.query")
    everything = _method("dsnot", skip=None).skip(SimpleNamespace(preset=preset))
    assert not everything("encoder.layer.0.intermediate.dense")


def test_blocks_follow_the_first_numeric_part_of_a_name():
    assert block_of("encoder.layer.3.attention.self.query") == "encoder.layer.3"
    assert block_of("pooler.dense") == ""
    layers = [(f"encoder.layer.{i}.{s}", None) for i in (0, 1) for s in ("a", "b")]
    assert [len(b) for b in group_blocks(layers)] == [2, 2]


def test_sms_phase_share_reaches_the_goal_after_every_phase():
    for goal, phases in ((0.5, 1), (0.9, 3), (0.75, 2)):
        share = phase_share(goal, phases)
        assert abs(1 - (1 - share) ** phases - goal) < 1e-12


@pytest.mark.parametrize("selector", ["global", "uniform"])
def test_sms_magnitude_masks_prune_the_share_of_what_is_left(selector):
    gen = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(10, 20, generator=gen), "b": 3 * torch.randn(5, 8, generator=gen)}
    first = magnitude_masks(weights, 0.5, {}, selector)
    total = sum(w.numel() for w in weights.values())
    assert sum(int(m.sum()) for m in first.values()) == round(0.5 * total) or selector == "uniform"
    if selector == "uniform":
        assert all(int(m.sum()) == round(0.5 * m.numel()) for m in first.values())
    second = magnitude_masks(weights, 0.5, first, selector)
    for n in weights:
        assert bool((second[n] | ~first[n]).all())  # pruned stays pruned
    left = total - sum(int(m.sum()) for m in first.values())
    added = sum(int(second[n].sum() - first[n].sum()) for n in weights)
    assert abs(added - 0.5 * left) <= len(weights)


def test_sms_soup_is_the_mean_and_keeps_the_shared_mask():
    mask = torch.tensor([[True, False], [False, True]])
    copies = []
    for i in range(3):
        w = torch.full((2, 2), float(i + 1))
        w[mask] = 0
        copies.append({"w": w, "n": torch.tensor([7])})
    soup = uniform_soup(copies)
    assert torch.equal(soup["w"], torch.tensor([[0.0, 2.0], [2.0, 0.0]]))
    assert torch.equal(soup["n"], torch.tensor([7]))


def test_the_calibration_slice_comes_from_the_training_split_only():
    """A fixed slice of encoded['train'] (validation is carved out of train before it),
    the same whatever the seed of the cell, never validation or test."""
    from suite.posthoc.compression import calibration_slice
    from suite.specs.posthoc import CalibrationSpec
    from suite.tasks.encoding import EncodedSplit

    def split(n, offset):  # example i's only token is offset + i
        return EncodedSplit([[offset + i] for i in range(n)], None, np.zeros(n, dtype=np.int64))

    encoded = {"train": split(50, 1000), "validation": split(5, 2000), "test": split(5, 3000)}
    setup = SimpleNamespace(encoded=encoded, pad=0, device=torch.device("cpu"))
    task = catalog().tasks.get("drug-condition").spec
    source = SimpleNamespace(setup=setup, cell=SimpleNamespace(task=task))
    cell = SimpleNamespace(calibration=CalibrationSpec(examples=12, seed=3, batch_size=5))
    batches = calibration_slice(source, cell)
    tokens = [int(t) for b in batches for t in b["input_ids"][:, 0]]
    assert [len(b["input_ids"]) for b in batches] == [5, 5, 2]
    expected = np.sort(np.random.default_rng(3).permutation(50)[:12]) + 1000
    assert tokens == expected.tolist()
    assert all(1000 <= t < 1050 for t in tokens)
