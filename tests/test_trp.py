"""TRP through the project's own training loop on the tiny bench: the hooks project at
step 0, the end's decomposition leaves every target at its trained rank, the row's count
is that rank's, and the saved adapter (ranks included) reloads to the same model."""

from __future__ import annotations

import io
import itertools

import torch
from safetensors.torch import load, save

from suite import conformance as C
from suite.methods.api import TrainingPlan
from suite.train.loop import LoopConfig, train
from tests.helpers import tiny_bench
from tests.test_conformance import built


def _layers(model):
    return [m for m in model.modules() if type(m).__name__ == "TRPLinear"]


def test_trp_trains_to_a_reported_rank_and_reloads():
    method, _, _ = built("trp")
    bench = tiny_bench()
    prepared = C.prepare(method, bench, training=TrainingPlan(1e-2, 6, 0))
    full = prepared.trainable_count()
    layers = _layers(prepared.model)
    assert layers and all(int(m.rank) == -1 for m in layers)
    cfg = LoopConfig(steps=6, lr=1e-2, schedule="constant")
    train(prepared, itertools.repeat(bench.batches[0]), C.loss_fn, cfg)
    ranks = [int(m.rank) for m in layers]
    assert all(
        0 <= r <= min(m.in_features, m.out_features) for r, m in zip(ranks, layers, strict=True)
    )
    for m, r in zip(layers, ranks, strict=True):
        assert int((torch.linalg.svdvals(m.weight.detach()) > 1e-4).sum()) <= r
    counted = sum(
        r * (m.in_features + m.out_features) + m.out_features
        for r, m in zip(ranks, layers, strict=True)
    )
    assert prepared.trainable_count() == counted != full  # the factors of the trained rank
    blob = save({k: v.contiguous() for k, v in prepared.adapter_state().items()})
    fresh = C.prepare(method, bench)
    fresh.load_adapter_state(load(io.BytesIO(blob).getvalue()))
    assert fresh.trainable_count() == counted
    assert torch.equal(C.outputs(prepared.model, bench), C.outputs(fresh.model, bench))
