"""bf16 autocast as a protocol setting (Budget.autocast): matmuls in bf16, weights,
adapters and optimiser in fp32, FLOP/s against the bf16 peak, and its own cell id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from suite.cells import expand
from suite.specs.budget import Budget
from suite.train.precision import autocast_context, compute_dtype


def test_autocast_runs_matmuls_in_bf16_and_leaves_weights_fp32():
    layer = torch.nn.Linear(8, 8)
    with autocast_context(torch.device("cpu"), "bf16"):
        out = layer(torch.ones(2, 8))
    assert out.dtype == torch.bfloat16 and layer.weight.dtype == torch.float32
    out.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32
    with autocast_context(torch.device("cpu"), None):
        assert layer(torch.ones(2, 8)).dtype == torch.float32


def test_the_calibration_dtype_is_the_autocast_one():
    assert compute_dtype("float32", "bf16") == "bfloat16"
    assert compute_dtype("float32", None) == "float32"


def test_an_unknown_autocast_dtype_is_refused():
    with pytest.raises(ValueError, match="autocast"):
        Budget(autocast="fp8")


def _cells(tiny_plugins, autocast):
    from suite.registry import Catalog
    from suite.specs.matrix import MatrixSpec

    matrix = MatrixSpec(
        name="ac", models=["tiny-bert"], methods=["lora", "full"], tasks=["drug-condition"],
        seeds=[0], budget=Budget(max_steps=3, batch_size=8, autocast=autocast),
    )  # fmt: skip
    return expand(matrix, Catalog.discover([tiny_plugins]))


def test_an_autocast_cell_is_another_protocol(tiny_plugins):
    plain, bf16 = _cells(tiny_plugins, None), _cells(tiny_plugins, "bf16")
    assert {c.cell_id for c in plain}.isdisjoint(c.cell_id for c in bf16)
    assert "autocast" not in plain[0].model_dump(mode="json", exclude_none=True)["budget"]


@pytest.mark.slow
def test_autocast_cells_train_fp32_weights_and_agree_with_fp32(tiny_plugins):
    from suite.scheduler.worker import CellWorker

    worker = CellWorker()
    for plain, bf16 in zip(_cells(tiny_plugins, None), _cells(tiny_plugins, "bf16"), strict=True):
        a, b = worker.run(plain).measured, worker.run(bf16).measured
        assert a.status == b.status == "ok", (a.error, b.error)
        ma, mb = a.measurements, b.measurements
        assert mb.base_dtype == "float32" and mb.adapter_dtype in (None, "float32")
        assert np.isfinite(mb.final_train_loss)
        assert mb.final_train_loss == pytest.approx(ma.final_train_loss, rel=0.05)
        assert mb.final_train_loss != ma.final_train_loss  # it did run in bf16
        pa = np.array(ma.predictions["test"].pred)
        pb = np.array(mb.predictions["test"].pred)
        assert (pa == pb).mean() > 0.9
    profiles = {dtype for _, dtype in worker.profiles}
    assert profiles == {"float32", "bfloat16"}
