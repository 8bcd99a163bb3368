"""Golden fixture for SaRA, produced by its authors' optimiser.

Repository: sjtuplayer/SaRA, commit ea21192477eb07f11f0fa202108e8c07873d91b9.
File run: optim/adamw2.py (class AdamW: set_mask_param, update_mask, step with the
nuclear-norm term and the masked update), loaded by path.

Command (from the peftbench repository root):

    /work/main/.venv/bin/python tests/golden/sara/generate.py /path/to/SaRA-checkout

Setting: two frozen-bias layers 80 -> 72 -> 70 (ReLU between), weights N(0, 0.05),
threshold 1e-2 (about 16% of the entries), lambda_rank 0.05, lr 1e-2, weight decay 1e-2,
progressive_iter 2, 4 steps on a fixed regression batch; the optimiser gets the two
weights only. The layer its nuclear-norm term uses each step is scripted (the module's
random.choice is replaced by the sequence CHOICES over low_rank_ids), so a test can use
the same. Stored: the initial weights, batch, each weight's mask and adaptive mask, the
losses and the weights after every step.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
COMMIT = "ea21192477eb07f11f0fa202108e8c07873d91b9"
CONFIG = {
    "dims": [80, 72, 70],
    "threshold": 1e-2,
    "lambda_rank": 0.05,
    "lr": 1e-2,
    "weight_decay": 1e-2,
    "progressive_iter": 2,
    "steps": 4,
    "batch": 8,
    "choices": [0, 1, 1, 0],
}


def load(ref: Path):
    spec = importlib.util.spec_from_file_location("sara_adamw2", ref / "optim" / "adamw2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(ref: Path) -> None:
    adamw2, c = load(ref), CONFIG
    gen = torch.Generator().manual_seed(0)
    d = c["dims"]
    layers = [torch.nn.Linear(d[i], d[i + 1]) for i in range(2)]
    out = {}
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.05)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.05)
            layer.bias.requires_grad_(False)
            out[f"init.{i}.weight"] = layer.weight.detach().clone()
            out[f"init.{i}.bias"] = layer.bias.detach().clone()
    x = torch.randn(c["batch"], d[0], generator=gen)
    target = torch.randn(c["batch"], d[2], generator=gen)
    out.update({"x": x, "target": target})
    opt = adamw2.AdamW(
        [layer.weight for layer in layers],
        lr=c["lr"],
        weight_decay=c["weight_decay"],
        threshold=c["threshold"],
        progressive_iter=c["progressive_iter"],
        lambda_rank=c["lambda_rank"],
    )
    choices = iter(c["choices"])
    adamw2.random.choice = lambda ids: ids[next(choices)]
    for i in range(2):
        out[f"mask.{i}"] = opt.param_mask_groups[i].clone()
    losses = []
    for step in range(c["steps"]):
        y = layers[1](torch.relu(layers[0](x)))
        loss = ((y - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        for i, layer in enumerate(layers):
            out[f"step{step}.{i}.weight"] = layer.weight.detach().clone()
    for i in range(2):
        out[f"adaptive.{i}"] = opt.param_mask_groups_adaptive[i].clone()

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "sjtuplayer/SaRA",
        "commit": COMMIT,
        "files": ["optim/adamw2.py (AdamW)"],
        "command": "/work/main/.venv/bin/python tests/golden/sara/generate.py <SaRA checkout>",
        "config": CONFIG,
        "losses": losses,
        "low_rank_ids": opt.low_rank_ids,
        "trainable_params": [int(opt.param_mask_groups[i].sum()) for i in range(2)],
        "notes": (
            "model: layers[1](relu(layers[0](x))), loss mean((y - target)^2); the optimiser "
            "holds the two weights (biases frozen). random.choice scripted by CHOICES."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
