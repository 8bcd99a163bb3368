"""Golden fixture for LLaVA-MoLE, from the authors' released code.

Repository: forwchen/LLaVA-MoLE, commit 5876301 ("code release").
Files used: moe.py (`LoRA_MOE_LM`: one router nn.Linear(d_model, E) per MLP block, shared
by gate/up/down and fed the block's input; E LoRALayer experts per projection, A
Kaiming-uniform, B zeros, scale lora_alpha / lora_rank, dropout 0.05; `dense_moe` weights
every expert by its softmax probability, the sparse path uses the argmax expert
unweighted) and model.py (`MLLM_LLaVA_MoLE.forward`: the text loss plus, per sequence,
sum_e mean(p_e) * mean(expert_choice_e) over all layers' unpadded tokens, divided by the
batch size, times moe_balance_w). llava_mole_infer.py gives the released configuration:
dense_moe = True, lora_rank 32, lora_alpha 64, 3 experts, LoRA on q,k,v,o.

Both files are run as released. Two LLaMA MLP blocks (transformers' LlamaMLP, hidden 16,
intermediate 24) are wrapped by `LoRA_MOE_LM` (3 experts, rank 4, alpha 8) and given fixed
random weights; `MLLM_LLaVA_MoLE.forward` is called unbound on a stand-in `self` whose
llm_model runs the two blocks on the input embeddings (its per-token loss is
(h . upstream) summed over features) and returns their routings, so the balance loss and
its weighting are the released lines. Everything runs in float64 and in eval mode (the experts'
dropout off), in dense and sparse mode, with the second sequence padded after 3 tokens.

Command (from this project's root, with a checkout of the commit at $MOLE):
    /work/main/.venv/bin/python tests/golden/mole/generate.py $MOLE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

HIDDEN, WIDTH, EXPERTS, RANK, ALPHA = 16, 24, 3, 4, 8
BATCH, SEQ, PADDED_FROM = 2, 5, 3
BALANCE_W = 0.5
SEED = 0
PROJECTIONS = ("gate", "up", "down")


def import_reference(checkout: Path):
    sys.path.insert(0, str(checkout))
    import model
    import moe

    assert Path(moe.__file__).resolve().is_relative_to(checkout), moe.__file__
    return moe.LoRA_MOE_LM, model.MLLM_LLaVA_MoLE


def mlp_block(gen: torch.Generator):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    block = LlamaMLP(
        LlamaConfig(hidden_size=HIDDEN, intermediate_size=WIDTH, num_attention_heads=4)
    )
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return block


def set_adapters(block, gen: torch.Generator, tensors: dict, prefix: str) -> None:
    """Random nonzero experts (B too, so the update is visible) and router."""
    with torch.no_grad():
        for proj in PROJECTIONS:
            for e, layer in enumerate(getattr(block, f"moe_{proj}")):
                layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=gen) * 0.3)
                layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.3)
                tensors[f"{prefix}.{proj}.{e}.A"] = layer.lora_A.detach().clone()
                tensors[f"{prefix}.{proj}.{e}.B"] = layer.lora_B.detach().clone()
        block.router.weight.copy_(torch.randn(block.router.weight.shape, generator=gen))
        block.router.bias.copy_(torch.randn(block.router.bias.shape, generator=gen) * 0.5)
    tensors[f"{prefix}.router.weight"] = block.router.weight.detach().clone()
    tensors[f"{prefix}.router.bias"] = block.router.bias.detach().clone()


def run_mode(LoRA_MOE_LM, MLLM, bases, dense: bool, tensors: dict, name: str) -> None:
    args = SimpleNamespace(
        dense_moe=dense, llm_moe=True, llm_moe_num_experts=EXPERTS, moe_balance_w=BALANCE_W
    )
    gen = torch.Generator().manual_seed(SEED + 1)  # the same adapters in both modes
    blocks = []
    for i, base in enumerate(bases):
        block = LoRA_MOE_LM(args, RANK, ALPHA, EXPERTS, original_module=base)
        set_adapters(block, gen, tensors, f"block{i}")
        blocks.append(block.eval())
    x0, upstream, mask = tensors["x0"], tensors["upstream"], tensors["attention_mask"]
    outputs = []

    def llm_model(inputs_embeds, labels, attention_mask):
        h, routings = inputs_embeds, []
        for block in blocks:
            h, routing = block(h)
            routings.append(routing)
        outputs.append(h)
        ret = {"loss": (h * upstream).sum(-1)[:, 1:].reshape(-1)}  # per-token, as CE is
        return _Ret(ret, routings)

    stand_in = SimpleNamespace(
        args=args,
        vit=lambda t: t,
        in_adaptor=lambda img, local, ins, ans: (x0, None, mask, torch.ones(BATCH, SEQ)),
        llm_model=llm_model,
    )
    total = MLLM.forward(stand_in, [None] * BATCH, ["i"] * BATCH, ["a"] * BATCH, [True] * BATCH)
    total.backward()
    tensors[f"{name}.out"] = outputs[0].detach()
    tensors[f"{name}.total_loss"] = total.detach().reshape(1)
    for i, block in enumerate(blocks):
        for proj in PROJECTIONS:
            for e, layer in enumerate(getattr(block, f"moe_{proj}")):
                tensors[f"{name}.grad.block{i}.{proj}.{e}.A"] = layer.lora_A.grad.clone()
                tensors[f"{name}.grad.block{i}.{proj}.{e}.B"] = layer.lora_B.grad.clone()
        tensors[f"{name}.grad.block{i}.router.weight"] = block.router.weight.grad.clone()
        tensors[f"{name}.grad.block{i}.router.bias"] = block.router.bias.grad.clone()


class _Ret(dict):
    """What the patched LlamaForCausalLM returns: a dict with a `routings` attribute."""

    def __init__(self, values: dict, routings: list):
        super().__init__(values)
        self.routings = routings


def main(checkout: str, out_dir: str) -> None:
    LoRA_MOE_LM, MLLM = import_reference(Path(checkout).resolve())
    # In float64, so the comparison sees the method, not fp32 summation order (the
    # reference sums its experts one by one, peftbench in one product).
    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(SEED)
    bases = [mlp_block(gen) for _ in range(2)]
    tensors: dict[str, torch.Tensor] = {}
    for i, base in enumerate(bases):
        for proj in PROJECTIONS:
            tensors[f"base{i}.{proj}"] = getattr(base, f"{proj}_proj").weight.detach().clone()
    mask = torch.ones(BATCH, SEQ)
    mask[1, PADDED_FROM:] = 0
    tensors.update(
        x0=torch.randn(BATCH, SEQ, HIDDEN, generator=gen),
        upstream=torch.randn(BATCH, SEQ, HIDDEN, generator=gen),
        attention_mask=mask,
    )
    for dense, name in ((True, "dense"), (False, "sparse")):
        run_mode(LoRA_MOE_LM, MLLM, bases, dense, tensors, name)

    # The reference's own initial tensors (torch.manual_seed(SEED) before building).
    torch.manual_seed(SEED)
    init = LoRA_MOE_LM(SimpleNamespace(dense_moe=True), RANK, ALPHA, EXPERTS, bases[0])
    tensors["init.gate.0.A"] = init.moe_gate[0].lora_A.detach().clone()
    tensors["init.gate.0.B"] = init.moe_gate[0].lora_B.detach().clone()
    trainable = sum(p.numel() for p in init.parameters() if p.requires_grad)

    from safetensors.torch import save_file

    out = Path(out_dir)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "fixture.safetensors"))
    meta = {
        "repo": "forwchen/LLaVA-MoLE",
        "commit": "5876301",
        "files": ["moe.py", "model.py", "llava_mole_infer.py"],
        "command": "/work/main/.venv/bin/python tests/golden/mole/generate.py $MOLE",
        "config": {
            "hidden": HIDDEN, "intermediate": WIDTH, "experts": EXPERTS, "lora_rank": RANK,
            "lora_alpha": ALPHA, "scaling": ALPHA / RANK, "batch": BATCH, "seq": SEQ,
            "padded_from": PADDED_FROM, "moe_balance_w": BALANCE_W, "blocks": 2, "seed": SEED,
            "released": {"dense_moe": True, "lora_rank": 32, "lora_alpha": 64,
                         "llm_moe_num_experts": 3, "lora_modules": "q_proj,k_proj,v_proj,o_proj",
                         "lora_dropout": 0.05},
        },
        "block_trainable_params": trainable,
        "notes": (
            "eval mode (the experts' dropout 0.05 off); the per-token loss stands in for the "
            "LM's cross-entropy; total_loss = mean masked token loss + balance loss x w."
        ),
    }  # fmt: skip
    (out / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).parent))
