"""Golden fixture for SNELLA, produced by the authors' own code.

Repository: ssfgunner/SNELL, commit e9d51857fd36f8753096b05a907bd5223ff07d44 (the
repository holds SNELLA since f4fbe23 "update snella").
Files run: model/vision_transformer_timm.py class SNELLA (mixed kernel, sparsify,
forward), sparse_allocator.py class Allocator (update_ipt, schedule_threshold,
mask_to_target_ratio, param_alloc), and the loop of train_alloc.py / engine.py
train_one_epoch: allocator.update(model, epoch) before each epoch, and after every
optimizer.step() allocator.update_ipt(model).

Command (from the peftbench repository root):

    /work/main/.venv/bin/python tests/golden/snella/generate.py /path/to/ssfgunner-SNELL

timm is stubbed as for SNELL (tests/golden/snell/generate.py). Stored: (1) one 24 -> 16
layer with fixed factors and alpha, gamma, beta moved off their init: kernel,
sparsified kernel, branch output, the five gradients; (2) a two-layer chain (24 -> 16
-> 12) trained 5 epochs of 3 steps with AdamW (lr 1e-2, no decay) on a fixed regression
batch, init_thres 0.05, target_ratio 0.6, beta1 = beta2 = 0.85, warmups 0, mask interval
1: each layer's sparsity after each epoch's allocation, the losses, the final tensors.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "snell"))
from generate import load as load_vit  # noqa: E402  (the SNELL fixture's timm-stubbed loader)

COMMIT = "e9d51857fd36f8753096b05a907bd5223ff07d44"
CONFIG = {
    "d_in": 24,
    "d_mid": 16,
    "d_out": 12,
    "q": 8,
    "kernels": 2,
    "layer_sparsity": 0.4,
    "init_thres": 0.05,
    "target_ratio": 0.6,
    "beta1": 0.85,
    "beta2": 0.85,
    "epochs": 5,
    "steps_per_epoch": 3,
    "lr": 1e-2,
    "batch": 6,
}


def load_allocator(ref: Path):
    spec = importlib.util.spec_from_file_location("snella_alloc", ref / "sparse_allocator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Allocator


def single_layer(vit, c, out):
    gen = torch.Generator().manual_seed(1)
    layer = vit.SNELLA(c["d_in"], c["d_mid"], init_thres=c["layer_sparsity"], q_dim=c["q"])
    with torch.no_grad():
        layer.In_Qs.copy_(torch.randn(layer.In_Qs.shape, generator=gen) * 0.5)
        layer.Out_Qs.copy_(torch.randn(layer.Out_Qs.shape, generator=gen) * 0.5)
        layer.alpha.fill_(1.3), layer.gamma.fill_(0.7), layer.beta.fill_(0.05)
    x = torch.randn(5, c["d_in"], generator=gen, requires_grad=True)
    upstream = torch.randn(5, c["d_mid"], generator=gen)
    out["single.In_Qs"], out["single.Out_Qs"] = (
        layer.In_Qs.detach().clone(),
        layer.Out_Qs.detach().clone(),
    )
    out["single.x"], out["single.upstream"] = x.detach().clone(), upstream
    kernel = layer.pathIntegrals()
    out["single.kernel"] = kernel.detach().clone()
    out["single.sparse_kernel"] = layer.sparsify(kernel).detach().clone()
    y = layer(x)
    (y * upstream).sum().backward()
    out["single.update"] = y.detach().clone()
    for name in ("In_Qs", "Out_Qs", "alpha", "gamma", "beta"):
        out[f"single.grad.{name}"] = getattr(layer, name).grad.clone()
    return sum(p.numel() for p in layer.parameters() if p.requires_grad)


def chain(vit, Allocator, c, out):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        vit.SNELLA(c["d_in"], c["d_mid"], init_thres=c["init_thres"], q_dim=c["q"]),
        vit.SNELLA(c["d_mid"], c["d_out"], init_thres=c["init_thres"], q_dim=c["q"]),
    )
    for i, layer in enumerate(model):
        out[f"chain.init.{i}.In_Qs"] = layer.In_Qs.detach().clone()
        out[f"chain.init.{i}.Out_Qs"] = layer.Out_Qs.detach().clone()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(c["batch"], c["d_in"], generator=gen, requires_grad=True)
    target = torch.randn(c["batch"], c["d_out"], generator=gen)
    out["chain.x"], out["chain.target"] = x.detach().clone(), target
    optimizer = torch.optim.AdamW(model.parameters(), lr=c["lr"], weight_decay=0.0)
    allocator = Allocator(model, c["target_ratio"], 0, 0, 1, c["beta1"], c["beta2"], c["epochs"])
    sparsity, losses = [], []
    for epoch in range(c["epochs"]):
        allocator.update(model, epoch)
        sparsity.append([float(layer.init_thres) for layer in model])
        for _ in range(c["steps_per_epoch"]):
            loss = ((model(x) - target) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            allocator.update_ipt(model, metric="ipt")
            losses.append(float(loss))
    for i, layer in enumerate(model):
        for name in ("In_Qs", "Out_Qs", "alpha", "gamma", "beta"):
            out[f"chain.final.{i}.{name}"] = getattr(layer, name).detach().clone()
    return sparsity, losses


def main(ref: Path) -> None:
    vit = load_vit(ref)
    Allocator = load_allocator(ref)
    c, out = CONFIG, {}
    count = single_layer(vit, c, out)
    sparsity, losses = chain(vit, Allocator, c, out)

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "ssfgunner/SNELL",
        "commit": COMMIT,
        "files": [
            "model/vision_transformer_timm.py (SNELLA, lines 303-350)",
            "sparse_allocator.py (Allocator)",
            "train_alloc.py, engine.py (allocator.update per epoch, update_ipt per step)",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/snella/generate.py <SNELL checkout>",
        "config": CONFIG,
        "trainable_params": count,
        "sparsity_per_epoch": sparsity,
        "losses": losses,
        "notes": (
            "The layer's forward is checkpointed in the reference (use_reentrant=False); x "
            "requires grad. Chain: model = SNELLA(24->16) then SNELLA(16->12), loss = "
            "mean((model(x) - target)^2)."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
