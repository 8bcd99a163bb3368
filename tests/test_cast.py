"""CAST (reconstructed): the n:m mask, the selective L1 proximal step, and 2:4 reached
during training (before the final zeroing) and held exactly after it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from suite.paths import SOURCE_ROOT
from suite.plugins import load_object

FOLDER = SOURCE_ROOT / "methods" / "cast"
CAST, CASTParams, l1_prox, nm_keep = (
    load_object(f"impl.py:{name}", FOLDER) for name in ("CAST", "CASTParams", "l1_prox", "nm_keep")
)  # fmt: skip


def _nonzeros_per_group(weight: torch.Tensor, m: int) -> torch.Tensor:
    return (weight.reshape(weight.shape[0], -1, m) != 0).sum(dim=-1)


def test_the_mask_keeps_the_two_largest_of_every_four():
    w = torch.tensor([[0.1, -0.9, 0.3, 0.2, 5.0, 4.0, -6.0, 0.0]])
    assert nm_keep(w, 2, 4).tolist() == [[False, True, True, False, True, False, True, False]]


def test_the_l1_step_moves_only_masked_out_entries_and_stops_at_zero():
    w = torch.tensor([0.5, -0.05, 0.3, -0.4])
    outside = torch.tensor([False, True, True, True])
    l1_prox(w, outside, 0.1)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.0, 0.2, -0.3]))


def test_n_must_be_below_m_and_m_must_divide_the_inputs():
    with pytest.raises(ValueError, match="must be below m"):
        CASTParams(n=4, m=4)
    assert "m" in CASTParams().shape_issues([(8, 6)])


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Module()
        self.backbone.lin = nn.Linear(16, 8)
        self.backbone.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.backbone.out(torch.relu(self.backbone.lin(x)))


def _train(l1: float, steps: int = 30):
    model = _Toy()
    for p in model.parameters():
        p.requires_grad_(False)
    method = CAST(CASTParams(l1=l1, targets=["lin"], train_rest=False))
    ctx = SimpleNamespace(preset=SimpleNamespace(resolve_targets=lambda t: t))
    prepared = method.prepare(model, ctx)
    layer = model.backbone.lin
    assert torch.equal(layer.weight_matrix(), layer.weight)  # unchanged at init
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    hooks = prepared.hooks
    hooks.bind_optimizer(opt)
    hooks.on_train_start(steps)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 16, generator=gen), torch.randn(64, 1, generator=gen)
    for step in range(steps):
        opt.zero_grad()
        (model(x) - y).square().mean().backward()
        opt.step()
        hooks.after_optimizer_step(step)
    return model, layer, hooks


def test_two_four_is_reached_during_training_and_held_after_it():
    model, layer, hooks = _train(l1=20.0)
    # before the final zeroing: the decay alone has emptied every masked-out entry
    assert bool((_nonzeros_per_group(layer.weight, 4) <= 2).all())
    hooks.on_train_end()
    assert torch.equal(_nonzeros_per_group(layer.weight, 4), torch.full((8, 4), 2))
    assert torch.equal(layer.weight_matrix() != 0, layer.weight != 0)  # the scale keeps zeros


def test_a_weak_decay_still_ends_exactly_two_four():
    _, layer, hooks = _train(l1=0.01)
    assert not bool((_nonzeros_per_group(layer.weight, 4) <= 2).all())
    hooks.on_train_end()
    assert bool((_nonzeros_per_group(layer.weight, 4) <= 2).all())


def test_the_count_is_the_dense_weights_and_one_scale_per_row():
    assert CAST(CASTParams()).expected_trainable_params([(8, 16), (4, 8)]) == 8 * 16 + 8 + 4 * 8 + 4
    assert CAST(CASTParams(scale=False)).expected_trainable_params([(8, 16)]) == 128
