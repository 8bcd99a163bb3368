"""Golden fixture for LoRAM's adapter recovery, from the authors' code.

Repository: junzhang-zj/LoRAM, commit ce64e68bbb3a24d21d1a85e883f71323879acb88.
File used: loram/3_recovered_low_rank_matrix_generation.py (main: recovers a LoRA
trained on the structurally pruned LLaMA-3.1-70B to the full shapes; zeroA: zero
columns of down_proj / o_proj lora_A at pruned inputs, zero rows of gate / up / q / k /
v lora_B at pruned outputs; the GQA mapping from pruned KV channels to query and o
channels, with its hard-coded head_dim 128, 64 query heads and 8 KV heads).

The script is run unchanged as a subprocess on a checkpoint folder this generator
writes: a PEFT adapter_model.safetensors for layers 0 and 1 with seeded random LoRA
factors (r 8) of the pruned shapes (intermediate 512 with 100 neurons pruned; 2 of 8 KV
heads pruned, so 6144 of 8192 query channels kept), and the pruned_idx files
(model.layers.N.mlp.gate_proj.pt, model.layers.N.self_attn.k_proj.pt) it reads.

Command (from the peftbench repository root, reference checked out at REF):
    /work/main/.venv/bin/python tests/golden/loram/generate.py REF

Stored: the pruned factors and indices (inputs) and the recovered factors (outputs) of
layer 1, as the reference wrote them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
R, INTER, HEAD_DIM, HEADS, KV = 8, 512, 128, 64, 8


def _inputs(folder: Path) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ckpt = folder / "peft" / "checkpoint-50"
    (folder / "pruned").mkdir(parents=True)
    ckpt.mkdir(parents=True)
    adapter, stored = {}, {}
    for layer in (0, 1):
        mlp_idx = torch.sort(torch.randperm(INTER, generator=gen)[:100]).values
        kv_heads = torch.sort(torch.randperm(KV, generator=gen)[:2]).values
        kv_idx = (kv_heads[:, None] * HEAD_DIM + torch.arange(HEAD_DIM)).flatten()
        torch.save(
            {"pruned_idx": mlp_idx}, folder / "pruned" / f"model.layers.{layer}.mlp.gate_proj.pt"
        )
        torch.save(
            {"pruned_idx": kv_idx}, folder / "pruned" / f"model.layers.{layer}.self_attn.k_proj.pt"
        )
        pre = f"base_model.model.model.layers.{layer}"
        shapes = {
            "mlp.down_proj.lora_A.weight": (R, INTER - 100),
            "mlp.gate_proj.lora_B.weight": (INTER - 100, R),
            "mlp.up_proj.lora_B.weight": (INTER - 100, R),
            "self_attn.o_proj.lora_A.weight": (R, HEADS * HEAD_DIM - 2048),
            "self_attn.q_proj.lora_B.weight": (HEADS * HEAD_DIM - 2048, R),
            "self_attn.k_proj.lora_B.weight": (KV * HEAD_DIM - 256, R),
            "self_attn.v_proj.lora_B.weight": (KV * HEAD_DIM - 256, R),
        }
        for name, shape in shapes.items():
            adapter[f"{pre}.{name}"] = torch.randn(shape, generator=gen)
        if layer == 1:
            stored |= {f"in.{k}": adapter[f"{pre}.{k}"] for k in shapes}
            stored |= {"mlp_idx": mlp_idx, "kv_idx": kv_idx}
    save_file(adapter, ckpt / "adapter_model.safetensors")
    (ckpt / "adapter_config.json").write_text(json.dumps({"r": R}))
    return stored


def main(ref: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stored = _inputs(folder)
        cmd = [
            sys.executable, f"{ref}/loram/3_recovered_low_rank_matrix_generation.py",
            "--ckpt_interval", "50", "51", "1", "--pruned_layer_interval", "0", "2",
            "--recovered_lora_attn", "--recovered_lora_mlp",
            "--pruned_path_attn", str(folder / "pruned"), "--pruned_path_mlp", str(folder / "pruned"),
            "--peft_model_path", str(folder / "peft"),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True)
        out = load_file(
            folder / "peft/checkpoint-50/recover_lora_mlp_attn_zeroA/adapter_model.safetensors"
        )
    pre = "base_model.model.model.layers.1."
    stored |= {f"out.{k[len(pre) :]}": v for k, v in out.items() if k.startswith(pre)}
    commit = subprocess.run(["git", "-C", ref, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    save_file({k: v.contiguous() for k, v in stored.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "junzhang-zj/LoRAM", "commit": commit,
        "files": ["loram/3_recovered_low_rank_matrix_generation.py"],
        "command": "/work/main/.venv/bin/python tests/golden/loram/generate.py REF",
        "config": {"r": R, "intermediate": INTER, "head_dim": HEAD_DIM, "heads": HEADS,
                   "kv_heads": KV, "pruned_neurons": 100, "pruned_kv_heads": 2,
                   "recover_type": "zeroA"},
        "notes": "layer 1 of a two-layer synthetic checkpoint; the script run unchanged",
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
