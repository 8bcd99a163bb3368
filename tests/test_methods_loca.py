"""Per-equation tests for LoCA (docs/methods-new.md): what the conformance suite cannot
see, on fixed tensors whose expected values are derived by hand here, never by the
implementation's own formula."""

from __future__ import annotations

import math

import pytest
import torch

from suite import conformance as C
from suite.methods.api import TrainingPlan
from suite.train.loop import LoopConfig, TrainingDriver
from tests.helpers import tiny_bench
from tests.support.methods import adapters, impl, make


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
