"""Golden fixture for MoSA, produced by its authors' code.

Repository: Theia-4869/MoSA, commit 286cc0fdb3297dc12fb7bc5d79f101049a92467d.
Files run: src/utils/pruner.py (Rand.score, Pruner.divide mode "all"),
src/models/vit_adapter/vit_mosa.py (MoSABlock: __init__, forward in training and eval
mode, merge("add")), src/solver/optimizer.py (AdamW), and the gradient masking of
src/engine/trainer.py (p.grad *= p.mask) as train.py attaches the masks.

Command (from the peftbench repository root):

    /work/main/.venv/bin/python tests/golden/mosa/generate.py /path/to/MoSA-checkout

Stubs: src.configs.vit_configs (ml_collections, for the ViT presets), src.utils.logging
(simplejson, termcolor) and `turtle` (an unused import of vit.py). The package __init__
files are skipped. The block is the Houlsby style with share "down" (the scripts'), 4
experts, hidden 16, bottleneck 4. Its attention and MLP are replaced by zero maps and the
FFN adapter's up-projection stays zero, so the block's output is x + f_attn(x): the
attention adapter alone, with module B chosen by patching vit_mosa's random.randint.

Stored: the masks of the up-projection (from a seeded rand score); the loaded expert
weights (each expert's own entries set, the rest at the zero init) and biases; for each
module B, the block output (training mode) and the masked gradients; the expert
weights after two AdamW steps with modules (1, 3); the merged layers and the block's
eval-mode output after merge("add").
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
COMMIT = "286cc0fdb3297dc12fb7bc5d79f101049a92467d"
CONFIG = {"hidden": 16, "bottleneck": 4, "experts": 4, "tokens": 5, "batch": 2, "mask_seed": 1}


def _stub(name, path=None, **attrs):
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [str(path)]
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    return mod


def load(ref: Path):
    src = ref / "src"
    sys.path.insert(0, str(ref))
    _stub("turtle", forward=None)
    _stub("src", src)
    _stub("src.configs", src / "configs")
    presets = {f"get_{n}_config": (lambda: None) for n in ("b16", "l16", "l32", "b32", "b8", "h14")}
    presets["get_r50_b16_config"] = lambda: None
    _stub("src.configs.vit_configs", **presets)
    _stub("src.utils", src / "utils")
    import logging

    _stub("src.utils.logging", get_logger=logging.getLogger)
    _stub("src.models", src / "models")
    _stub("src.models.vit_adapter", src / "models" / "vit_adapter")
    _stub("src.models.vit_backbones", src / "models" / "vit_backbones")
    _stub("src.solver", src / "solver")
    _stub("fvcore"), _stub("fvcore.common"), _stub("fvcore.common.config", CfgNode=object)
    vit_mosa = importlib.import_module("src.models.vit_adapter.vit_mosa")
    pruner = importlib.import_module("src.utils.pruner")
    optim = importlib.import_module("src.solver.optimizer")
    return vit_mosa, pruner, optim


class Zero(torch.nn.Module):
    def __init__(self, returns_tuple):
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, x):
        z = torch.zeros_like(x)
        return (z, None) if self.returns_tuple else z


def ns(**kw):
    return types.SimpleNamespace(**kw)


def block(vit_mosa, c):
    config = ns(
        hidden_size=c["hidden"],
        transformer={
            "num_heads": 2,
            "attention_dropout_rate": 0.0,
            "mlp_dim": 8,
            "dropout_rate": 0.0,
        },
    )
    adapter = ns(
        BOTTLENECK_SIZE=c["bottleneck"], STYLE="Houlsby", EXPERT_NUM=c["experts"], SHARE="down"
    )
    blk = vit_mosa.MoSABlock(config, False, adapter)
    blk.attn, blk.ffn = Zero(True), Zero(False)
    return blk


def forced(vit_mosa, b):
    # MoSABlock.forward draws A, B, C, D with random.randint; force B (the attention
    # adapter's up module); with share "down" A is unused and the FFN adapter is zero.
    seq = iter([0, b, 0, 0])
    vit_mosa.random.randint = lambda lo, hi: next(seq)


def main(ref: Path) -> None:
    vit_mosa, pruner_mod, optim = load(ref)
    c, n = CONFIG, CONFIG["experts"]
    torch.manual_seed(0)
    blk = block(vit_mosa, c)
    out = {"init.down.weight": blk.adapter_down_attn.weight.detach().clone()}
    out["init.up.weight0"] = blk.adapter_up_attn[0].weight.detach().clone()
    cfg = ns(MODEL=ns(TRANSFER_TYPE="mosa", ADAPTER=ns(EXPERT_NUM=n, BIAS=True)))
    pruner = pruner_mod.Rand(cfg)
    torch.manual_seed(c["mask_seed"])
    score = pruner.score(blk.adapter_up_attn[0].weight)
    masks = pruner.divide(score)
    bias_masks = pruner.divide(pruner.score(blk.adapter_up_attn[0].bias))
    for i in range(n):
        blk.adapter_up_attn[i].weight.mask = masks[i]
        blk.adapter_up_attn[i].bias.mask = bias_masks[i]
        out[f"mask{i}"] = masks[i].clone()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        blk.adapter_down_attn.weight.copy_(
            torch.randn(c["bottleneck"], c["hidden"], generator=gen) * 0.5
        )
        blk.adapter_down_attn.bias.copy_(torch.randn(c["bottleneck"], generator=gen) * 0.1)
        for i in range(n):
            w = torch.randn(c["hidden"], c["bottleneck"], generator=gen) * 0.3
            blk.adapter_up_attn[i].weight.copy_(w * masks[i])
            blk.adapter_up_attn[i].bias.copy_(torch.randn(c["hidden"], generator=gen) * 0.1)
    for i in range(n):
        out[f"loaded.up.weight{i}"] = blk.adapter_up_attn[i].weight.detach().clone()
        out[f"loaded.up.bias{i}"] = blk.adapter_up_attn[i].bias.detach().clone()
    out["loaded.down.weight"] = blk.adapter_down_attn.weight.detach().clone()
    out["loaded.down.bias"] = blk.adapter_down_attn.bias.detach().clone()
    x = torch.randn(c["batch"], c["tokens"], c["hidden"], generator=gen)
    upstream = torch.randn(c["batch"], c["tokens"], c["hidden"], generator=gen)
    out.update({"x": x, "upstream": upstream})
    params = [p for name, p in blk.named_parameters() if "adapter" in name and "attn" in name]
    blk.train()
    for b in range(n):
        forced(vit_mosa, b)
        blk.zero_grad(set_to_none=True)
        y, _ = blk(x)
        (y * upstream).sum().backward()
        for p in params:
            if p.grad is not None and hasattr(p, "mask"):
                p.grad.data *= p.mask
        out[f"B{b}.output"] = y.detach().clone()
        out[f"B{b}.grad.up.weight"] = blk.adapter_up_attn[b].weight.grad.clone()
        out[f"B{b}.grad.up.bias"] = blk.adapter_up_attn[b].bias.grad.clone()
        out[f"B{b}.grad.down.weight"] = blk.adapter_down_attn.weight.grad.clone()
        out[f"B{b}.grad.down.bias"] = blk.adapter_down_attn.bias.grad.clone()
    # Two steps of the reference's optimiser (its groups: decay 0.01 except biases).
    named = [
        (k, p)
        for k, p in blk.named_parameters()
        if "adapter" in k and "attn" in k and "merge" not in k
    ]
    opt = optim.AdamW(
        [
            {"params": [p for k, p in named if "bias" not in k], "weight_decay": 0.01},
            {"params": [p for k, p in named if "bias" in k], "weight_decay": 0.0},
        ],
        lr=1e-2,
    )
    for b in (1, 3):
        forced(vit_mosa, b)
        opt.zero_grad(set_to_none=True)
        y, _ = blk(x)
        (y * upstream).sum().backward()
        for _k, p in named:
            if p.grad is not None and hasattr(p, "mask"):
                p.grad.data *= p.mask
        opt.step()
    for i in range(n):
        out[f"steps.up.weight{i}"] = blk.adapter_up_attn[i].weight.detach().clone()
        out[f"steps.up.bias{i}"] = blk.adapter_up_attn[i].bias.detach().clone()
    out["steps.down.weight"] = blk.adapter_down_attn.weight.detach().clone()
    out["steps.down.bias"] = blk.adapter_down_attn.bias.detach().clone()
    blk.eval()
    blk.merge("add")
    out["merged.up.weight"] = blk.adapter_up_attn_merge.weight.detach().clone()
    out["merged.up.bias"] = blk.adapter_up_attn_merge.bias.detach().clone()
    with torch.no_grad():
        out["merged.output"] = blk(x)[0].clone()

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "Theia-4869/MoSA",
        "commit": COMMIT,
        "files": [
            "src/utils/pruner.py (Rand, Pruner.divide)",
            "src/models/vit_adapter/vit_mosa.py (MoSABlock Houlsby, share down: forward, merge)",
            "src/solver/optimizer.py (AdamW)",
            "src/engine/trainer.py (grad *= mask)",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/mosa/generate.py <MoSA checkout>",
        "config": CONFIG,
        "steps_modules": [1, 3],
        "notes": (
            "Attention and MLP replaced by zero maps; FFN adapter up-projection at its zero "
            "init: the block output is x + f_attn(x). random.randint patched to choose the "
            "up module B. Masks from torch.manual_seed(mask_seed); rand_like on the up weight."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
