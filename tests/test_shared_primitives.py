"""The primitives that several plugins and runners share (folded from their copies):
a Params ordering check, the walk over an optimiser's tensors, a failed cell's outcome,
and the one-line outcome of a post-hoc or continual result."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from suite.methods.api import MethodParams, at_most
from suite.methods.optimizers import with_grads
from suite.results import CellReport, ContinualMeasured, PosthocMeasured, StageOutcome
from suite.train.failure import failure
from suite.train.loop import NonFiniteLoss


class _Mixture(MethodParams):
    experts: int = 4
    top_k: int = 2
    _k_within_experts = at_most("top_k", "experts")


def test_at_most_names_both_fields_and_values():
    assert _Mixture(top_k=4).top_k == 4  # equal is allowed
    with pytest.raises(ValidationError, match=r"top_k \(5\) must not exceed experts \(4\)"):
        _Mixture(top_k=5)


def test_with_grads_walks_only_the_tensors_with_a_gradient_in_group_order():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad, c.grad = torch.ones(2), torch.ones(2)
    opt = torch.optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 0.5}], lr=0.1)
    walked = [(group["lr"], p) for group, p in with_grads(opt)]
    assert [lr for lr, _ in walked] == [0.1, 0.5]
    assert walked[0][1] is a and walked[1][1] is c


def test_failure_gives_each_kind_of_error_its_status():
    assert failure(NonFiniteLoss("loss is nan at step 3")) == {
        "status": "nan",
        "error": "loss is nan at step 3",
    }
    assert failure(MemoryError("no room")) == {"status": "oom", "error": "MemoryError: no room"}
    try:
        raise ValueError("bad shape")
    except ValueError as exc:
        out = failure(exc)
    assert out["status"] == "failed"
    assert "Traceback" in out["error"] and out["error"].endswith("ValueError: bad shape\n")


def test_stage_outcome_summarises_an_ok_result_and_cuts_an_error():
    ok = CellReport(measured=ContinualMeasured(status="ok"))
    assert StageOutcome.of(ok, ContinualMeasured, lambda m: "ACC 1").summary == "ACC 1"
    # An ok result of another kind is not summarised by this kind's line.
    assert StageOutcome.of(ok, PosthocMeasured, lambda m: "x").summary == ""
    failed = CellReport(measured=PosthocMeasured(status="failed", error="e" * 300))
    outcome = StageOutcome.of(failed, PosthocMeasured, lambda m: "x")
    assert outcome.status == "failed" and outcome.summary == "e" * 200
