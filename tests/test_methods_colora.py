"""Per-equation tests for CoLoRA (docs/methods-new.md): what the conformance suite cannot
see, on fixed tensors whose expected values are derived by hand here, never by the
implementation's own formula."""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from tests.helpers import tiny_bench
from tests.support.methods import adapters, impl, make


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
