"""AutoLoRA's gated fusion (a merge whose result is layers with trained gates) and
ICM-LoRA's generation (each task's LoRA made by a CVAE trained on the others') as
post-hoc stages: through the driver on the tiny BERT, and their contracts on tensors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
import torch
from torch import nn

from suite.driver import in_process_executor, plan, run_plan
from suite.plugins import load_object
from suite.posthoc.api import MergeContext, SourceData, TaskUpdate
from suite.registry import Catalog
from suite.store.store import Store
from suite.train.loop import TrainStats

ROOT = Path(__file__).resolve().parents[1]

MATRIX = """\
name: posthoc-fusion
models: [tiny-bert]
methods: [lora]
tasks: [drug-condition, drug-sentiment]
seeds: [0]
budget: {max_steps: 2, batch_size: 8}
posthoc:
  - name: fuse
    stage: merge
    inputs: {method: lora}
    budget: {max_steps: 3, batch_size: 8}
    methods: [autolora]
  - name: generate
    stage: generate
    inputs: {method: lora}
    methods:
      - {method: icm-lora, params: {epochs: 1, latent: 8, icl_examples: 4, slice_length: 8192}}
"""


def _method(name: str, **params):
    folder = ROOT / "posthoc" / name
    cls = load_object("impl.py:" + {"autolora": "AutoLora", "icm-lora": "ICMLora"}[name], folder)
    return cls(cls.Params(**params))


@pytest.mark.slow
def test_autolora_and_icm_lora_run_end_to_end_and_are_stored(tiny_plugins, tmp_path):
    path = tmp_path / "posthoc-fusion.yaml"
    path.write_text(MATRIX)
    db = tmp_path / "results" / "r.duckdb"
    catalog = Catalog.discover([tiny_plugins])
    store = Store(db)
    the_plan = plan(catalog, str(path), store)
    summary = run_plan(the_plan, store, in_process_executor(results_dir=db.parent))
    assert summary.all_ok, [(r.status, r.error) for r in summary.results]
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT method, stage_name, task, normalised, train_steps FROM merging ORDER BY 1, 3"
    ).fetchall()
    con.close()
    assert [(m, s, t) for m, s, t, _, _ in rows] == [
        ("autolora", "fuse", "drug-condition"), ("autolora", "fuse", "drug-sentiment"),
        ("icm-lora", "generate", "drug-condition"), ("icm-lora", "generate", "drug-sentiment"),
    ]  # fmt: skip
    assert all(n is not None for *_, n, _ in rows)
    assert [steps for m, *_, steps in rows if m == "autolora"] == [3, 3]


def _lora(gen, out=6, inp=5, r=2):
    return torch.randn(out, r, generator=gen), torch.randn(r, inp, generator=gen)


def test_autolora_trains_only_the_gates_and_fuses_each_task_model_with_them():
    gen = torch.Generator().manual_seed(0)
    factors = [_lora(gen), _lora(gen)]
    updates = [TaskUpdate(f"t{i}", {"lin.weight": b @ a}, {"lin.weight": (b, a)})
               for i, (b, a) in enumerate(factors)]  # fmt: skip
    seen = {}

    def train(layers, lr, weight_decay):
        base = nn.Linear(5, 6)
        base.requires_grad_(False)
        fused = layers["lin"](base)
        seen["trainable"] = sorted(n for n, p in fused.named_parameters() if p.requires_grad)
        seen["fused"], seen["base"] = fused, base
        return TrainStats(steps=4)

    data = SourceData(examples=None, base_model=None, train=train)
    merged = _method("autolora").merge(updates, MergeContext(seed=0, data=data))
    assert merged.train_steps == 4 and merged.shared == {}
    assert any(n.endswith("weight_lora") for n in seen["trainable"])
    assert not any(n.startswith("base.") for n in seen["trainable"])
    x = torch.randn(3, 5)
    fused, base = seen["fused"], seen["base"]
    outs = torch.stack([x @ a.T @ b.T for b, a in factors])
    expected = fused.layer.fusion(base(x), outs)
    assert torch.allclose(fused(x), expected, atol=1e-6)
    assert {k.split(".")[-1] for k in merged.stored} >= {"b0", "a1", "weight_lora", "bias"}


def test_autolora_without_a_budget_is_refused_with_the_reason():
    updates = [TaskUpdate("t", {}, {}), TaskUpdate("u", {}, {})]
    data = SourceData(examples=None, base_model=None, train=None)
    with pytest.raises(ValueError, match="needs a budget"):
        _method("autolora").merge(updates, MergeContext(seed=0, data=data))


class _Base(nn.Module):
    """A stand-in base model: the hidden state is the token ids, embedded by a fixed table."""

    def __init__(self):
        super().__init__()
        self.table = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))

    def backbone(self, input_ids, attention_mask, output_hidden_states):
        return SimpleNamespace(hidden_states=[self.table[input_ids]])


def _generate(updates):
    def examples(index, n, batch_size=16):
        ids = torch.full((2, 3), 10 + index)
        return [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}]

    data = SourceData(examples=examples, base_model=lambda i: _Base(), train=None)
    method = _method("icm-lora", epochs=1, latent=4, icl_examples=2)
    return method.generate(updates, MergeContext(seed=0, data=data))


def test_icm_lora_generates_each_task_from_the_others_only():
    gen = torch.Generator().manual_seed(0)
    factors = [_lora(gen) for _ in range(3)]

    def updates(first):
        pairs = [first, *factors[1:]]
        return [TaskUpdate(f"t{i}", {"lin.weight": b @ a}, {"lin.weight": (b, a)})
                for i, (b, a) in enumerate(pairs)]  # fmt: skip

    one = _generate(updates(factors[0]))
    other = _generate(updates(_lora(torch.Generator().manual_seed(9))))
    assert one.per_task[0]["lin.weight"].shape == (6, 5)
    # Task 0's own LoRA never reaches its generated one; the others' CVAEs saw it.
    assert torch.equal(one.per_task[0]["lin.weight"], other.per_task[0]["lin.weight"])
    assert not torch.equal(one.per_task[1]["lin.weight"], other.per_task[1]["lin.weight"])


def test_icm_lora_refuses_loras_of_different_layouts():
    gen = torch.Generator().manual_seed(0)
    (b, a), (b2, a2) = _lora(gen), _lora(gen, r=3)
    updates = [TaskUpdate("t", {"w": b @ a}, {"w": (b, a)}),
               TaskUpdate("u", {"w": b2 @ a2}, {"w": (b2, a2)})]  # fmt: skip
    with pytest.raises(ValueError, match="one layout"):
        _generate(updates)


def test_every_posthoc_yaml_lists_exactly_its_params_defaults():
    """The yaml's params are the plan-time record a cell id hashes; the defaults live in
    the implementation's Params, so the two must agree (AutoLoRA's and ICM-LoRA's too)."""
    from tests.helpers import catalog

    for entry in catalog().posthoc:
        cls = load_object(entry.spec.implementation, entry.folder)
        assert entry.spec.params == cls.Params().model_dump(), entry.name
