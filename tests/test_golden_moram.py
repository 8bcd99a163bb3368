"""Little by Little (MoRAM) against Artificer-AI-Lab/MoRAM's own layer
(tests/golden/moram/generate.py): self-activated top-k routing in training, the
threshold gate in evaluation, and the frozen expert pool over two task boundaries."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from suite.plugins import load_object
from tests.support.golden import assert_close, load_fixture

IMPL = str(Path(__file__).resolve().parent.parent / "methods" / "moram")


def _impl():
    return sys.modules[load_object("impl.py:MoRAM", IMPL).__module__]


def _layer(fx):
    impl, c = _impl(), fx.config
    base = nn.Linear(c["d_in"], c["d_out"])
    base.load_state_dict({k: fx[f"init.{k}"] for k in ("weight", "bias")})
    p = impl.MoRAMParams(r=c["r"], top_k=c["topk"], temp=c["temp"], threshold=c["threshold"])
    layer = impl.MoRAMLinear(base, p)
    with torch.no_grad():
        layer.lora_A.copy_(fx["init.lora_A"])
        layer.lora_B.copy_(fx["init.lora_B"])
    return layer


def _check(layer, fx, tag: str) -> None:
    layer.train()
    layer.zero_grad(set_to_none=True)
    y = layer(fx["x"])
    assert_close(y, fx[f"{tag}.y_train"], f"{tag}: training output")
    (y * fx["proj"]).sum().backward()
    assert_close(layer.lora_A.grad, fx[f"{tag}.grad.lora_A"], f"{tag}: grad A")
    assert_close(layer.lora_B.grad, fx[f"{tag}.grad.lora_B"], f"{tag}: grad B")
    layer.eval()
    with torch.no_grad():
        assert_close(layer(fx["x"]), fx[f"{tag}.y_eval"], f"{tag}: evaluation output")


def test_golden_moram_routing_in_training_and_evaluation():
    fx = load_fixture("moram")
    layer = _layer(fx)
    _check(layer, fx, "task0")
    # the evaluation threshold switches experts off: the two modes differ
    assert (fx["task0.y_train"] - fx["task0.y_eval"]).abs().max() > 1e-4


def test_golden_moram_expert_pool_over_two_task_boundaries():
    fx = load_fixture("moram")
    layer, c = _layer(fx), fx.config
    for i, seed in enumerate(c["boundary_seeds"]):
        torch.manual_seed(seed)
        layer.next_task()
        tag = f"task{i + 1}"
        assert_close(layer.lora_A, fx[f"{tag}.lora_A"], f"{tag}: fresh A")
        assert torch.count_nonzero(layer.lora_B) == 0
        with torch.no_grad():
            layer.lora_B.copy_(fx[f"{tag}.lora_B"])
        _check(layer, fx, tag)
    assert_close(layer.old_A, fx["pool.A"], "frozen pool A")
    assert_close(layer.old_B, fx["pool.B"], "frozen pool B")
    assert layer.experts == 3 * c["r"]
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_A", "lora_B"}
