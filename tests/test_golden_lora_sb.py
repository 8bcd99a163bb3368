"""LoRA-SB against RaghavSinghal10/lora-sb's own code (tests/golden/lora-sb).

The fixture re-enacts train_glue.py on a tiny model: gradients over 5 samples, the
official eta = lr / (warmup_ratio x total steps), the sign step, the rank-r SVD."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from suite.methods.api import PrepareContext, TrainingPlan
from suite.plugins import load_object
from tests.helpers import tiny_preset
from tests.support.golden import GOLDEN_DIR, assert_close, load_fixture

FIX = load_fixture("lora-sb")
C = FIX.config
IMPL = GOLDEN_DIR.parent.parent / "methods" / "lora-sb"
LoRASB = load_object("impl.py:LoRASB", IMPL)
LoRASBParams = load_object("impl.py:LoRASBParams", IMPL)
_spec = importlib.util.spec_from_file_location(
    "lora_sb_golden", GOLDEN_DIR / "lora-sb" / "generate.py"
)
GEN = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(GEN)  # the fixture's tiny model and samples (not reference code)
BF16 = 2.0**-8  # the reference casts U, S, V to bfloat16 (relative rounding <= 2^-9)


def collate(rows: list[dict]) -> dict:
    return {k: torch.stack([row[k] for row in rows]) for k in rows[0]}


def plan() -> TrainingPlan:
    steps = C["total_steps"]
    return TrainingPlan(lr=C["lr"], steps=steps, warmup_steps=int(C["warmup_ratio"] * steps))


def prepared(training: TrainingPlan | None = None, **params):
    model = GEN.tiny_model()
    model.load_state_dict(
        {k.removeprefix("weights."): v for k, v in FIX.tensors.items() if k.startswith("weights.")}
    )
    rows, size = GEN.samples(), C["batch_size"]
    batches = [collate(rows[i : i + size]) for i in range(0, len(rows), size)]
    ctx = PrepareContext(
        preset=tiny_preset(),
        seed=0,
        device=torch.device("cpu"),
        train_batches=lambda: iter(batches),
        loss_fn=lambda m, batch: m(**batch).loss,
        training=training or plan(),
    )
    p = {"r": C["r"], "grad_samples": C["num_samples"], "targets": C["targets"], **params}
    return LoRASB(LoRASBParams(**p)).prepare(model, ctx)


def layers(prep) -> dict:
    return {name: prep.model.backbone.get_submodule(name) for name in C["targets"]}


def test_golden_lora_sb_initial_factors_use_the_official_eta():
    """eta = lr / (warmup_ratio x steps) = 1e-3 / 2 here; R, B, A as the reference's
    (at bf16, the precision its get_svd_grad casts them to)."""
    for name, layer in layers(prepared()).items():
        ref_b, ref_r, ref_a = (FIX[f"{name}.{t}"] for t in ("lora_B", "R", "lora_A"))
        # In units of eta, so that the tolerance is relative to R's largest entry.
        eta = C["eff_lr"]
        assert_close(layer.lora_R / eta, ref_r / eta, f"{name}: R = diag(sigma_r)", tol=BF16)
        signs = torch.sign((layer.lora_B * ref_b).sum(0))
        assert_close(layer.lora_B * signs, ref_b, f"{name}: B", tol=BF16)
        assert_close(layer.lora_A * signs[:, None], ref_a, f"{name}: A", tol=BF16)
        ours_delta, ref_delta = layer.delta_weight(), ref_b @ ref_r @ ref_a
        assert_close(ours_delta / eta, ref_delta / eta, f"{name}: B R A", tol=4 * BF16)
        assert torch.count_nonzero(torch.triu(layer.lora_R, 1)) == 0
        assert layer.scaling == FIX.config["scaling"] == 1.0


def test_golden_lora_sb_init_is_the_exact_rank_r_svd_of_the_references_sign_step():
    """At fp32: B R A is the best rank-r approximation of the reference's -eta sign(G)."""
    r = C["r"]
    for name, layer in layers(prepared()).items():
        step = FIX[f"{name}.processed_grad"]
        assert torch.equal(step.abs(), torch.full_like(step, C["eff_lr"]))
        u, s, vh = torch.linalg.svd(step, full_matrices=False)
        best = (u[:, :r] * s[:r]) @ vh[:r]
        assert_close(layer.delta_weight() / C["eff_lr"], best / C["eff_lr"], f"{name}: B R A")


def test_golden_lora_sb_eta_edge_cases():
    """No warmup: eta = lr (the official formula would divide by zero; HF's warmup
    counts max(1, warmup)). No training plan: the documented fallback. A given init_step
    wins over both."""
    step = load_object("impl.py:update_step", IMPL)
    p = LoRASBParams()
    assert step(p, plan()) == pytest.approx(C["eff_lr"], rel=1e-12)
    assert step(p, TrainingPlan(lr=2e-3, steps=100, warmup_steps=0)) == 2e-3
    assert step(p, None) == load_object("impl.py:UNPLANNED_STEP", IMPL)
    assert step(LoRASBParams(init_step=3e-5), plan()) == 3e-5


def test_golden_lora_sb_forward_gradients_delta():
    prep = prepared()
    with torch.no_grad():
        for name, layer in layers(prep).items():
            layer.lora_B.copy_(FIX[f"{name}.lora_B"])
            layer.lora_R.copy_(FIX[f"{name}.R"])
            layer.lora_A.copy_(FIX[f"{name}.lora_A"])
    prep.model.eval()
    logits = prep.model(input_ids=FIX["eval_ids"]).logits
    assert_close(logits, FIX["logits"], "logits")
    logits.backward(FIX["upstream"])
    for name, layer in layers(prep).items():
        assert_close(layer.lora_R.grad, FIX[f"{name}.grad_R"], f"{name}: grad R")
        assert_close(
            layer.merged_weight() - layer.base.weight, FIX[f"{name}.delta"], f"{name}: delta"
        )
    adapter = sum(p.numel() for n, p in prep.model.named_parameters() if "lora_R" in n)
    frozen_factors = [
        p for n, p in prep.model.named_parameters() if n.endswith(("lora_A", "lora_B"))
    ]
    assert adapter == FIX.meta["trainable"] and not any(p.requires_grad for p in frozen_factors)
