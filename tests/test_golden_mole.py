"""LLaVA-MoLE against its released code (tests/golden/mole, forwchen/LLaVA-MoLE@5876301).

Two LLaMA MLP blocks are adapted by peftbench's `mole` (experts on gate/up/down, one
router per block fed the block's input), the reference's tensors are loaded into it, and
the output, the total loss (masked token loss + the released balance loss) and every
gradient are compared with the reference's, with dense (the released config) and top-1
routing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite.methods.api import PrepareContext
from suite.plugins import load_object
from suite.specs.model import ModelPreset
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("mole")
CFG = FIX.config
E, PROJ = CFG["experts"], ("gate", "up", "down")
PRESET = ModelPreset.model_validate(
    {"name": "two-mlps", "family": "llama", "source": {"config": {"model_type": "llama"}},
     "target_modules": {"mlp": ["gate_proj", "up_proj", "down_proj"]}}
)  # fmt: skip


class _Backbone(nn.Module):
    def __init__(self):
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaMLP

        super().__init__()
        config = LlamaConfig(
            hidden_size=CFG["hidden"], intermediate_size=CFG["intermediate"], num_attention_heads=4
        )
        # float64, as the fixture (generate.py)
        self.layers = nn.ModuleList(LlamaMLP(config) for _ in range(CFG["blocks"])).double()
        with torch.no_grad():
            for i, block in enumerate(self.layers):
                for proj in PROJ:
                    getattr(block, f"{proj}_proj").weight.copy_(FIX[f"base{i}.{proj}"])

    def forward(self, inputs_embeds, attention_mask=None):
        for block in self.layers:
            inputs_embeds = block(inputs_embeds)
        return inputs_embeds


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _Backbone()
        self.backbone.requires_grad_(False)


def _prepared(routing: str):
    cls = load_object("impl.py:MoLE", "methods/mole")
    params = cls.Params(
        experts=E, r=CFG["lora_rank"], alpha=CFG["lora_alpha"], dropout=0.0, targets="mlp",
        lora_targets=[], routing=routing, aux_loss_weight=CFG["moe_balance_w"],
    )  # fmt: skip
    ctx = PrepareContext(preset=PRESET, seed=0, device=torch.device("cpu"))
    prepared = cls(params).prepare(_Model(), ctx)
    prepared.model.double()
    return prepared


def _experts(prepared, i: int, proj: str):
    return getattr(prepared.model.backbone.layers[i], f"{proj}_proj")


def _load_reference(prepared) -> None:
    with torch.no_grad():
        for i, block in enumerate(prepared.model.backbone.layers):
            for proj in PROJ:
                layer = _experts(prepared, i, proj)
                layer.lora_A.weight.copy_(
                    torch.cat([FIX[f"block{i}.{proj}.{e}.A"] for e in range(E)])
                )
                layer.lora_B.weight.copy_(
                    torch.cat([FIX[f"block{i}.{proj}.{e}.B"] for e in range(E)], dim=1)
                )
            block.mole_router.weight.copy_(FIX[f"block{i}.router.weight"])
            block.mole_router.bias.copy_(FIX[f"block{i}.router.bias"])


@pytest.mark.parametrize(("routing", "mode"), [("dense", "dense"), ("top1", "sparse")])
def test_golden_mole_forward_loss_and_gradients(routing, mode):
    prepared = _prepared(routing)
    _load_reference(prepared)
    model = prepared.model.train()  # dropout 0 here, as the reference's eval mode
    out = model.backbone(inputs_embeds=FIX["x0"], attention_mask=FIX["attention_mask"])
    assert_close(out, FIX[f"{mode}.out"], f"{mode} output")
    text = (out * FIX["upstream"]).sum(-1)[:, 1:].mean()
    total = text + prepared.hooks.extra_loss()
    assert_close(total.reshape(1), FIX[f"{mode}.total_loss"], f"{mode} total loss")
    total.backward()
    for i, block in enumerate(model.backbone.layers):
        for proj in PROJ:
            layer, r = _experts(prepared, i, proj), CFG["lora_rank"]
            for e in range(E):
                got_a = layer.lora_A.weight.grad[e * r : (e + 1) * r]
                got_b = layer.lora_B.weight.grad[:, e * r : (e + 1) * r]
                assert_close(got_a, FIX[f"{mode}.grad.block{i}.{proj}.{e}.A"], f"dA {i}{proj}{e}")
                assert_close(got_b, FIX[f"{mode}.grad.block{i}.{proj}.{e}.B"], f"dB {i}{proj}{e}")
        for part in ("weight", "bias"):
            got = getattr(block.mole_router, part).grad
            assert_close(got, FIX[f"{mode}.grad.block{i}.router.{part}"], f"router {part} {i}")


def test_golden_mole_structure_init_and_count():
    prepared = _prepared("dense")
    block = prepared.model.backbone.layers[0]
    # One router per MLP block, shared by gate, up and down.
    routers = [n for n, m in prepared.model.named_modules() if n.endswith("mole_router")]
    assert routers == ["backbone.layers.0.mole_router", "backbone.layers.1.mole_router"]
    assert all(_experts(prepared, 0, p).block_router is block.mole_router for p in PROJ)
    per_block = sum(p.numel() for p in block.parameters() if p.requires_grad)
    assert per_block == FIX.meta["block_trainable_params"]
    # The reference's init: B zero, each expert's A Kaiming-uniform over (r, d_in).
    gate = _experts(prepared, 0, "gate")
    assert gate.lora_B.weight.abs().max() == 0 == FIX["init.gate.0.B"].abs().max()
    bound = 1 / CFG["hidden"] ** 0.5
    assert gate.lora_A.weight.abs().max() <= bound and FIX["init.gate.0.A"].abs().max() <= bound
    assert gate.scaling == CFG["scaling"]


def test_mole_defaults_are_the_released_configuration():
    from tests.helpers import catalog

    released = CFG["released"]
    params = catalog().methods.get("mole").spec.params
    assert (params["experts"], params["r"], params["alpha"], params["dropout"]) == (
        released["llm_moe_num_experts"], released["lora_rank"], released["lora_alpha"],
        released["lora_dropout"],
    )  # fmt: skip
    assert params["routing"] == ("dense" if released["dense_moe"] else "top1")
