"""Slice targets for fused projections (suite/methods/fused.py): GPT-2's `qv` adapts the
q and v rows of the fused `attn.c_attn`, not k. The counts are those of the papers'
GPT-2 Medium setups (LoRA's merged q/v layer; FourierFT's Table: 48,000 at n=1000),
checked on a GPT-2 Medium built from its config on the meta device (nothing downloaded,
no weights allocated); outputs on a small GPT-2 of the same structure."""

from __future__ import annotations

import pytest
import torch

from suite.cells import resolve_method
from suite.conformance import instantiate
from suite.methods.api import PrepareContext
from suite.methods.fused import FusedLinear, fused_rows, split_fused
from suite.models.loading import load_backbone
from suite.models.taskmodel import TaskModel
from suite.specs.matrix import MethodEntry
from suite.train.prepare import prepare_model
from tests.helpers import catalog

MEDIUM = {"model_type": "gpt2", "n_embd": 1024, "n_layer": 24, "n_head": 16}
SMALL = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 100,
         "n_positions": 64, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}  # fmt: skip


def gpt2_preset(config: dict):
    """The gpt2-medium preset (its targets and fused modules) on a config-built model."""
    preset = catalog().models.get("gpt2-medium").spec
    return preset.model_copy(update={"source": preset.source.model_validate({"config": config})})


def method(name: str, **overrides):
    """The catalogue's method with its YAML defaults, hyperparameters overridden."""
    return instantiate(resolve_method(catalog(), MethodEntry(method=name), "test"), overrides)


def prepared(preset, name: str, device: str = "cpu", **overrides):
    with torch.device(device):
        backbone = load_backbone(preset)
        model = TaskModel(backbone, 2, preset.pooling, seed=0)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    ctx = PrepareContext(preset=preset, seed=0, device=torch.device(device))
    return prepare_model(method(name, **overrides), model, ctx).prepared.model


def trainable(model) -> int:
    return sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("name", "overrides", "count"),
    [("lora", {"r": 4}, 393_216), ("fourierft", {"n_frequency": 1000}, 48_000)],
)
def test_gpt2_medium_qv_counts_match_the_papers(name, overrides, count):
    model = prepared(gpt2_preset(MEDIUM), name, device="meta", targets="qv", **overrides)
    assert trainable(model) == count
    fused = model.backbone.transformer.h[0].attn.c_attn
    assert isinstance(fused, FusedLinear) and fused.part_names == ("q", "k", "v")
    assert not any(p.requires_grad for p in fused.k.parameters())


def test_lora_on_q_and_v_leaves_k_unchanged():
    preset = gpt2_preset(SMALL)
    base = load_backbone(preset).eval()
    model = prepared(preset, "lora", targets="qv", r=4).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))  # B = 0 at init: move it so q and v change
    x = torch.randn(3, 5, 32)
    d = 32
    with torch.no_grad():
        want = base.transformer.h[1].attn.c_attn(x)
        got = model.backbone.transformer.h[1].attn.c_attn(x)
    torch.testing.assert_close(got[..., d : 2 * d], want[..., d : 2 * d], rtol=0, atol=1e-6)
    assert (got[..., :d] - want[..., :d]).abs().max() > 1e-3
    assert (got[..., 2 * d :] - want[..., 2 * d :]).abs().max() > 1e-3


def test_a_split_fused_linear_computes_what_the_fused_one_did():
    preset = gpt2_preset(SMALL)
    backbone = load_backbone(preset).eval()
    ids = torch.randint(0, 100, (2, 7))
    with torch.no_grad():
        want = backbone(input_ids=ids).logits
        assert split_fused(backbone, preset, ["attn.c_attn.v"]) == [
            "transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"
        ]  # fmt: skip
        got = backbone(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_whole_targets_keep_the_fused_module_whole():
    model = prepared(gpt2_preset(SMALL), "lora", targets="attention", r=4)
    c_attn = model.backbone.transformer.h[0].attn.c_attn
    assert not isinstance(c_attn, FusedLinear) and c_attn.lora_B.weight.shape == (96, 4)


def test_unequal_parts_and_bad_declarations():
    from pydantic import ValidationError

    preset = gpt2_preset(SMALL)
    gqa = preset.model_copy(update={"fused_modules": {"attn.c_attn": {"q": 64, "kv": 32}}})
    assert fused_rows(gqa, "h.0.attn.c_attn", 96) == {"q": 64, "kv": 32}
    with pytest.raises(ValueError, match="sum to 96 rows, the module has 90"):
        fused_rows(gqa, "h.0.attn.c_attn", 90)
    with pytest.raises(ValueError, match="not divisible into 3 equal parts"):
        fused_rows(preset, "h.0.attn.c_attn", 100)
    assert fused_rows(preset, "h.0.attn.c_proj", 32) is None
    with pytest.raises(ValidationError, match="two or more distinct part names"):
        preset.model_validate({**preset.model_dump(), "fused_modules": {"c_attn": ["q", "q"]}})


def sliceable_methods() -> list[str]:
    """Every catalogue method that takes `targets` (the rest cannot name a slice)."""
    from suite.plugins import load_object

    names = []
    for entry in catalog().methods:
        resolved = resolve_method(catalog(), MethodEntry(method=entry.name), "test")
        cls = load_object(resolved.implementation, resolved.impl_dir)
        if entry.spec.status != "test-only" and "targets" in cls.Params.model_fields:
            names.append(entry.name)
    return names


def lm_batches(n: int = 2) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 100, (4, 10), generator=gen)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                    "target_mask": torch.ones_like(ids)})  # fmt: skip
    return out


@pytest.mark.parametrize("name", sliceable_methods())
def test_every_method_adapts_q_and_v_slices_or_refuses_them(name):
    """A method adapting slices leaves k as it leaves any linear it does not target (mlp's
    c_fc here): frozen, so k's output is unchanged however its trainables move; q and v
    do change. A method that cannot says so (`adapts_slices = False`: refused at plan)."""
    from suite.methods.api import TrainingPlan

    resolved = resolve_method(catalog(), MethodEntry(method=name), "test")
    conformance = catalog().methods.get(name).spec.conformance
    chosen = instantiate(resolved, {**conformance.params, "targets": "qv"})
    preset = gpt2_preset(SMALL)
    if not type(chosen).adapts_slices or type(chosen).model_issue(preset):
        pytest.skip("refuses slice targets (or GPT-2) at plan time: test_shape_checks.py")
    base = load_backbone(preset).eval()
    model = TaskModel(load_backbone(preset), 2, preset.pooling, seed=0)
    model.backbone.requires_grad_(False)
    batches = lm_batches()
    ctx = PrepareContext(
        preset=preset, seed=0, device=torch.device("cpu"),
        train_batches=lambda: iter(batches * 50), loss_fn=lambda m, b: -m(**b).mean(),
        training=TrainingPlan(lr=1e-3, steps=20, warmup_steps=2),
        holdout_batches=lambda: iter(batches * 50),
    )  # fmt: skip
    prepared = prepare_model(chosen, model, ctx).prepared.model.eval()
    with torch.no_grad():
        for p in prepared.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    layer = prepared.backbone.transformer.h[0]
    c_attn, c_fc = layer.attn.c_attn, layer.mlp.c_fc
    assert isinstance(c_attn, FusedLinear)
    assert type(c_attn.k) is type(c_fc)
    assert c_attn.k.weight.requires_grad == c_fc.weight.requires_grad
    x = torch.randn(3, 5, 32)
    with torch.no_grad():
        got, want = c_attn(x), base.transformer.h[0].attn.c_attn(x)
    moved = [(got[..., i * 32 : (i + 1) * 32] - want[..., i * 32 : (i + 1) * 32]).abs().max()
             for i in range(3)]  # fmt: skip
    assert moved[0] > 1e-4 and moved[2] > 1e-4
    if not c_fc.weight.requires_grad:
        assert moved[1] < 1e-6


def test_parts_of_a_bf16_base_stay_bf16_and_the_adapter_is_fp32():
    preset = gpt2_preset(SMALL).model_copy(update={"dtype": "bfloat16"})
    c_attn = prepared(preset, "lora", targets="qv", r=4).backbone.transformer.h[0].attn.c_attn
    assert c_attn.k.weight.dtype == c_attn.q.base.weight.dtype == torch.bfloat16
    assert c_attn.q.lora_A.weight.dtype == torch.float32
