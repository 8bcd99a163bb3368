"""Precision on a bf16 base: adapters train in fp32, base tensors that train get fp32
master weights, and every method's every trainable tensor moves under AdamW at lr 1e-3
(in pure bf16 a parameter at 1.0 would not move at all)."""

from __future__ import annotations

import itertools

import pytest
import torch

from suite import conformance as C
from suite.methods.api import Prepared
from suite.train.loop import LoopConfig, TrainingDriver, train
from tests.helpers import bench_from_backbone, catalog, tiny_bert_backbone, tiny_preset
from tests.test_conformance import built, methods


def bf16_bench():
    return bench_from_backbone(tiny_bert_backbone().to(torch.bfloat16), tiny_preset(), vocab=100)


def test_pure_bf16_adamw_does_not_move_a_parameter_at_one():
    # The defect this module guards against, shown on a bare tensor.
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.0)
    for _ in range(10):
        p.grad = torch.ones_like(p)
        opt.step()
    assert torch.equal(p.detach(), torch.ones(4, dtype=torch.bfloat16))


def test_master_weights_move_a_bf16_parameter_at_one():
    model = torch.nn.Linear(4, 4).to(torch.bfloat16)
    model.weight.data.fill_(1.0)
    prepared = Prepared(model=model)
    driver = TrainingDriver(prepared, LoopConfig(steps=10, lr=1e-3, schedule="constant"))
    for _ in range(10):
        model.zero_grad()
        model(torch.ones(2, 4, dtype=torch.bfloat16)).sum().backward()
        driver.optimizer_step()
    assert model.weight.dtype == torch.bfloat16
    assert float(model.weight.float().mean()) < 0.995  # about 1 - 10 x 1e-3


def test_lora_adapter_is_fp32_and_base_stays_bf16():
    method, _, _ = built("lora")
    prepared = C.prepare(method, bf16_bench())
    adapted = [m for m in prepared.model.modules() if hasattr(m, "lora_A")]
    assert adapted
    for m in adapted:
        assert m.lora_A.weight.dtype == torch.float32
        assert m.base.weight.dtype == torch.bfloat16
    out = prepared.model(**bf16_bench().batches[0])
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("name", methods())
def test_every_trainable_tensor_moves_on_a_bf16_base(name):
    method, _, _ = built(name)
    bench = bf16_bench()
    prepared = C.prepare(method, bench)
    before = {
        n: p.detach().float().clone()
        for n, p in prepared.model.named_parameters()
        if p.requires_grad
    }
    cfg = LoopConfig(steps=10, lr=1e-3, schedule="constant")
    stats = train(prepared, itertools.cycle(bench.batches), C.loss_fn, cfg)
    assert all(torch.isfinite(torch.tensor(stats.losses)))
    # Methods that prune at the end (SoRA's zeroed ranks) drop tensors: compare the rest.
    after = dict(prepared.model.named_parameters())
    kept = [n for n in before if n in after and after[n].shape == before[n].shape]
    assert kept, f"{name}: no trainable tensor survived training"
    frozen = [n for n in kept if torch.equal(after[n].detach().float(), before[n])]
    assert not frozen, f"{name}: {len(frozen)} trainable tensors did not move, e.g. {frozen[:3]}"
    assert catalog()  # the catalogue loaded once for every case


def test_a_bf16_tiny_llama_cell_trains_through_the_cli(generated, tmp_path):
    """`peftbench run` on a bf16 tiny Llama: LoRA's adapter in fp32, the base in bf16, and
    the row records both, with the method's fidelity, version and source hash."""
    import json
    import textwrap

    import yaml

    from tests.test_cli_e2e import cli

    preset = catalog().models.get("tiny-llama").spec.model_dump(mode="json", exclude_none=True)
    preset.update(name="tiny-llama-bf16", dtype="bfloat16")
    (generated / "models").mkdir(exist_ok=True)
    (generated / "models" / "tiny-llama-bf16.yaml").write_text(yaml.safe_dump(preset))
    matrix = tmp_path / "bf16.yaml"
    matrix.write_text(
        textwrap.dedent("""\
        name: bf16
        models: [tiny-llama-bf16]
        methods: [lora]
        tasks: [gen-choice]
        seeds: [0]
        budget: {max_steps: 3, batch_size: 4}
        """)
    )
    db = tmp_path / "bf16.duckdb"
    run = cli(
        "run", str(matrix), "--plugins", str(generated), "--db", str(db), "--executor", "local"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = cli(
        "query",
        "select status, base_dtype, adapter_dtype, fidelity, method_version, "
        "method_source_hash, loss_curve from results",
        "--db", str(db), "--format", "json",
    )  # fmt: skip
    (row,) = json.loads(out.stdout)
    assert row["status"] == "ok"
    assert (row["base_dtype"], row["adapter_dtype"]) == ("bfloat16", "float32")
    assert row["fidelity"] == catalog().methods.get("lora").spec.fidelity
    assert row["method_version"] >= 1 and len(row["method_source_hash"]) == 16
    assert len(row["loss_curve"]) == 3
