"""Cost measurements cost little: the unmerged latency is timed on evaluation's own test
forwards, the merged one reuses the drift forward as its warm-up."""

from __future__ import annotations

import statistics

import pytest
import torch

from suite.train.measure import LATENCY_BATCHES, ForwardTimer


def test_the_timer_times_the_first_forwards_and_keeps_the_first_output():
    layer = torch.nn.Linear(4, 2)
    xs = [torch.full((3, 4), float(i)) for i in range(5)]
    with ForwardTimer(layer, torch.device("cpu"), limit=3) as timer:
        outs = [layer(x) for x in xs]
    assert len(timer.times) == 3 and all(t > 0 for t in timer.times)
    torch.testing.assert_close(timer.first_output, outs[0])
    assert timer.median(3) == statistics.median(timer.times)
    assert timer.median(4) is None  # not every batch was timed: measure them instead
    layer(xs[0])  # hooks are gone once the timer is left
    assert len(timer.times) == 3


@pytest.fixture(scope="module")
def lora_cell(tiny_plugins):
    from suite.cells import expand
    from suite.registry import Catalog
    from suite.specs.matrix import Budget, MatrixSpec

    matrix = MatrixSpec(
        name="costs", models=["tiny-bert"], methods=["lora"], tasks=["drug-condition"],
        seeds=[0], budget=Budget(max_steps=2, batch_size=8),
    )  # fmt: skip
    (cell,) = expand(matrix, Catalog.discover([tiny_plugins]))
    return cell


def test_a_mergeable_cell_runs_latency_batches_plus_one_extra_forwards(lora_cell, monkeypatch):
    from suite.train import runner

    counted: dict[str, int] = {}
    measure = runner.measure

    def counting(cell, setup, ready, eval_sets, timer):
        calls = [0]
        model = ready.prepared.model
        handle = model.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
        try:
            out = measure(cell, setup, ready, eval_sets, timer)
        finally:
            handle.remove()
        counted["forwards"] = calls[0]
        counted["batches"] = len(eval_sets["test"][:LATENCY_BATCHES])
        counted["timed"] = timer.median(counted["batches"])
        return out

    monkeypatch.setattr(runner, "measure", counting)
    measured = runner.run_cell(lora_cell)
    assert measured.status == "ok", measured.error
    m = measured.measurements
    n = counted["batches"]
    assert 1 < n <= LATENCY_BATCHES
    # Was 2 x (n + 1) + 2: a warm-up and n batches unmerged and merged, two for drift.
    assert counted["forwards"] == n + 1
    assert m.latency_unmerged_s == counted["timed"] > 0
    assert m.latency_merged_s > 0 and m.merge_max_abs_diff < 1e-4
