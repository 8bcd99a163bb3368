"""On a CUDA device (skipped elsewhere): a bf16 base keeps fp32 adapters there too, and
every method's trainable tensors move, as tests/test_precision.py checks on the CPU."""

from __future__ import annotations

import itertools

import pytest
import torch

from suite import conformance as C
from suite.train.loop import LoopConfig, train
from tests.helpers import bench_from_backbone, tiny_bert_backbone, tiny_preset
from tests.test_conformance import built, methods

pytestmark = pytest.mark.gpu


def _cuda_bf16_bench():
    bench = bench_from_backbone(tiny_bert_backbone().to(torch.bfloat16), tiny_preset(), vocab=100)
    batches = [{k: v.cuda() for k, v in b.items()} for b in bench.batches]
    return bench, batches


@pytest.mark.parametrize("name", methods())
def test_every_method_trains_on_a_cuda_bf16_base(name):
    method, _, _ = built(name)
    bench, batches = _cuda_bf16_bench()
    prepared = C.prepare(method, bench)
    prepared.model.cuda()
    before = {
        n: p.detach().float().clone()
        for n, p in prepared.model.named_parameters()
        if p.requires_grad
    }
    stats = train(
        prepared,
        itertools.cycle(batches),
        C.loss_fn,
        LoopConfig(steps=10, lr=1e-3, schedule="constant"),
    )
    assert all(torch.isfinite(torch.tensor(stats.losses)))
    after = dict(prepared.model.named_parameters())
    kept = [n for n in before if n in after and after[n].shape == before[n].shape]
    assert all(not torch.equal(after[n].detach().float(), before[n]) for n in kept), name
