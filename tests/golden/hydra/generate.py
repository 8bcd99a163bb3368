"""Golden fixture for Hydra, from the authors' vision code.

Repository: extremebird/Hydra, commit 4138457859666d49b9ca9e45473d8570586670bb.
Files used: elevater/vision_benchmark/evaluation/Hydra_model.py (Hydra: down_proj and
up_proj nn.Linear with biases, init_option 'lora': down weight N(0, 0.02^2), up weight and
both biases zero, scale "1.0"; HydraMLP: linear(x) + adapter_par(x) + adapter_seq(linear(x)),
bottleneck 2) and elevater/vision_benchmark/evaluation/Hydra_clip.py:105-109 (the trained
set: parameters whose name contains 'adapter'). Hydra_model.py is loaded by file path (it
imports only torch and numpy).

Command (from the peftbench repository root, reference checked out at REF):
    /work/main/.venv/bin/python tests/golden/hydra/generate.py REF

What it stores (CPU, float32): a HydraMLP(24, 16): its initial adapter tensors; then,
with fixed values loaded into the frozen linear and all eight adapter tensors, the
output for a fixed x, the adapter gradients for a fixed upstream gradient, and the
merged affine map's delta (weight and bias, read from the reference's forward on the
identity and on zero); `down_stats`: mean/std of the parallel down-projection of a
HydraMLP(1024, 16) (2 x 1024 entries drawn from the global RNG).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def main(ref: str) -> None:
    ref_path = Path(ref).resolve()
    spec = importlib.util.spec_from_file_location(
        "hydra_reference", ref_path / "elevater/vision_benchmark/evaluation/Hydra_model.py"
    )
    hydra = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hydra)
    commit = subprocess.run(
        ["git", "-C", str(ref_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()

    d_in, d_out = 24, 16
    torch.manual_seed(0)
    mlp = hydra.HydraMLP(d_in, d_out)
    adapter = {n: p for n, p in mlp.named_parameters() if "adapter" in n}
    init = {f"init.{n}": p.detach().clone() for n, p in adapter.items()}

    gen = torch.Generator().manual_seed(13)
    with torch.no_grad():
        mlp.linear.weight.copy_(torch.randn(d_out, d_in, generator=gen) * 0.3)
        mlp.linear.bias.copy_(torch.randn(d_out, generator=gen) * 0.1)
        for p in adapter.values():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    w0, b0 = mlp.linear.weight.detach().clone(), mlp.linear.bias.detach().clone()
    loaded = {f"loaded.{n}": p.detach().clone() for n, p in adapter.items()}
    x = torch.randn(3, 5, d_in, generator=gen)
    upstream = torch.randn(3, 5, d_out, generator=gen)
    out = mlp(x)
    out.backward(upstream)
    grads = {f"grad.{n}": p.grad.detach().clone() for n, p in adapter.items()}
    with torch.no_grad():
        bias = mlp(torch.zeros(1, d_in))[0]
        weight = (mlp(torch.eye(d_in)) - bias).T

    torch.manual_seed(1)
    big = hydra.HydraMLP(1024, 16).adapter_par.down_proj.weight.detach()

    tensors = {
        "W0": w0,
        "b0": b0,
        **init,
        **loaded,
        "x": x,
        "upstream": upstream,
        "out": out.detach(),
        **grads,
        "delta_weight": weight - w0,
        "delta_bias": bias - b0,
    }
    meta = {
        "repo": "extremebird/Hydra",
        "commit": commit,
        "files": [
            "elevater/vision_benchmark/evaluation/Hydra_model.py (Hydra, HydraMLP)",
            "elevater/vision_benchmark/evaluation/Hydra_clip.py (trained set)",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/hydra/generate.py REF",
        "config": {"d_in": d_in, "d_out": d_out, "bottleneck": 2, "scale": 1.0},
        "trainable": sum(p.numel() for p in adapter.values()),
        "names": {n: list(p.shape) for n, p in adapter.items()},
        "down_stats": {"mean": float(big.mean()), "std": float(big.std()), "nominal_std": 0.02},
        "notes": (
            "Names map adapter_par -> hydra_par, adapter_seq -> hydra_seq, down_proj -> [0], "
            "up_proj -> [1]. The reference draws the down-projections from the global RNG "
            "(after nn.Linear's own init); they are compared as a distribution. "
            "HydraMLP hard-codes bottleneck 2 and scale 1.0."
        ),
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(HERE / "fixture.safetensors"))
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
