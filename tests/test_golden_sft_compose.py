"""LT-SFT composition against cambridgeltl/composable-sft@29f7872's SFT.apply
(tests/golden/sft-compose/generate.py): the sparse diffs of two fine-tunings, composed by
peftbench's sft-compose method, give the parameters the reference's apply produced (the
task head taken from the applied task's own fine-tuning, as its "abs" parameters)."""

from __future__ import annotations

import torch

from suite.plugins import load_object
from suite.posthoc.api import MergeContext, TaskUpdate
from tests.helpers import catalog
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("sft-compose")
BODY = ("body.0.weight", "body.1.weight")


def _method():
    entry = catalog().posthoc.get("sft-compose")
    cls = load_object(entry.spec.implementation, entry.folder)
    return cls(cls.Params.model_validate(entry.spec.params))


def test_golden_sft_compose_adds_the_sparse_diffs_like_composable_sft():
    updates = [TaskUpdate(f"t{t}", {n: FIX[f"sft{t}/diff/{n}"] for n in BODY}) for t in (1, 2)]
    merged = _method().merge(updates, MergeContext(seed=0))
    for name in BODY:
        composed = FIX[f"base/{name}"] + merged.update_for(1)[name]
        assert_close(composed, FIX[f"composed/{name}"], name)
    # parameters no diff touches are left as they were
    assert_close(FIX["base/body.0.bias"], FIX["composed/body.0.bias"], "body.0.bias")
    # the evaluated task's head is its own fine-tuned head ("abs")
    for name in ("head.weight", "head.bias"):
        assert torch.equal(FIX[f"sft2/abs/{name}"], FIX[f"composed/{name}"])


def test_sft_compose_keeps_the_union_of_the_sparse_deltas_compactly():
    updates = [TaskUpdate(f"t{t}", {n: FIX[f"sft{t}/diff/{n}"] for n in BODY}) for t in (1, 2)]
    merged = _method().merge(updates, MergeContext(seed=0))
    for name in BODY:
        union = int(((FIX[f"sft1/diff/{name}"] != 0) | (FIX[f"sft2/diff/{name}"] != 0)).sum())
        assert len(merged.stored[f"{name}.values"]) == union
        assert merged.stored[f"{name}.indices"].dtype == torch.int32
