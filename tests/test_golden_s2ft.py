"""S2FT against its authors' code (Infini-AI-Lab/S2FT finetune.py's S2 block,
utils/s2_utils.py, s2ft/s2.py; fixture in tests/golden/s2ft/).

On the same tiny LLaMA and seed: the heads and FFN channels selected per layer, each
layer's unit order after the co-permutation, and with the reference's s2 values loaded,
the model output, the gradients of the trained slices, the merged delta and the count.
"""

from __future__ import annotations

import torch
from torch import nn

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, tiny_preset
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("s2ft")
CFG = FX.config
LLAMA_LAYOUT = {
    "layers": "layers",
    "attn_in": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    "attn_out": "self_attn.o_proj",
    "ffn_in": ["mlp.up_proj", "mlp.gate_proj"],
    "ffn_out": "mlp.down_proj",
}


class LlamaTask(nn.Module):
    """The fixture's LlamaForCausalLM: its LlamaModel as the backbone, plus a head."""

    def __init__(self):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(CFG["model_seed"])
        lm = LlamaForCausalLM(LlamaConfig(**CFG["llama"])).eval()
        sums = {k: float(v.double().sum()) for k, v in lm.state_dict().items()}
        for name, expected in FX.meta["model_param_sums"].items():
            assert abs(sums[name] - expected) < 1e-6, f"{name}: not the fixture's model"
        self.backbone = lm.model
        self.head = nn.Linear(CFG["llama"]["hidden_size"], 3)


def prepared_llama():
    model = LlamaTask()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    params = {"o_ratio": CFG["o_ratio"], "d_ratio": CFG["d_ratio"], **LLAMA_LAYOUT}
    method = C.instantiate(resolve_method(catalog(), MethodEntry(method="s2ft", params=params)))
    ctx = PrepareContext(preset=tiny_preset(), seed=CFG["seed"], device=torch.device("cpu"))
    prepared = method.prepare(model, ctx)
    slices = {
        f"model.{n.removeprefix('backbone.')}": m
        for n, m in model.named_modules()
        if type(m).__name__ == "S2SliceLinear"
    }
    return prepared, slices


def test_golden_s2ft_selection_and_co_permutation_order():
    _, slices = prepared_llama()
    hd = CFG["llama"]["hidden_size"] // CFG["llama"]["num_attention_heads"]
    for kind, proj, width in (("mha", "self_attn.o_proj", hd), ("ffn", "mlp.down_proj", 1)):
        ref_key = "o_proj" if kind == "mha" else "down_proj"
        for i, ref_order in enumerate(FX.meta["orders"][kind]):
            m = slices[f"model.layers.{i}.{proj}"]
            chosen = FX.meta["selected"][kind][ref_key][str(i)]
            assert sorted(m.order[: m.n // width].tolist()) == chosen, f"layer {i} {kind}"
            assert m.order.tolist() == ref_order, f"layer {i} {kind}: unit order"


def test_golden_s2ft_forward_gradients_delta_and_count():
    prepared, slices = prepared_llama()
    with torch.no_grad():
        for name, m in slices.items():
            m.slice.copy_(m.base.weight[:, : m.n] + FX[f"s2.{name}.s2"])
    hidden = prepared.model.backbone(input_ids=FX["input_ids"]).last_hidden_state
    assert_close(hidden, FX["hidden"], "model output")
    (hidden * FX["upstream"]).sum().backward()
    for name, m in slices.items():
        assert_close(m.slice.grad, FX[f"grad.{name}.s2"], f"{name} grad")
        delta = m.delta_weight().detach()
        assert_close(delta[:, : m.n], FX[f"delta.{name}"], f"{name} delta")
        assert float(delta[:, m.n :].abs().max()) == 0.0
    assert C.adapter_param_count(prepared) == FX.meta["trainable_params"]
