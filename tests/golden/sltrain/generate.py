"""Golden fixture for SLTrain, from the authors' code.

Repository: andyjm3/SLTrain, commit 2335d62 (the full sha is stored in fixture.json).
Files used: splora/splora_linear.py (SpLoRaLinear: parameter draws, scaling lora_alpha / r,
sparse support, the autograd function lora_sparse_linear) and its C++ extension
sparse-lora/sparse_linear.cpp (module `sltrain_linear`: forward W = B (A s) +
scatter_add(values), y = x W^T + b; backward from x and the factors). The extension is
built in the checkout, not installed:

    cd REF/sparse-lora && python setup.py build_ext --inplace

Command (from the peftbench repository root, reference checked out and built at REF):
    /work/main/.venv/bin/python tests/golden/sltrain/generate.py REF

What it stores (CPU, float32): for two layers built one after the other right after
torch.manual_seed(SEED) (so they draw from one stream, as SpLoRaModel's loop does), the
initial bias, lora_A, lora_B, sparse_index and sparse_value; then, with lora_B (zero at
init) set to fixed values, each layer's output on a fixed x, the gradients of x, lora_A,
lora_B, sparse_value and bias for a fixed upstream gradient, and the dense weight W read
from the reference's forward on the identity (minus the bias); the trainable count.
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
SEED = 7
CONFIG = {
    "seed": SEED,
    "r": 4,
    "lora_alpha": 8,
    "sp_ratio": 0.1,
    "layers": [{"in": 16, "out": 24, "bias": True}, {"in": 40, "out": 12, "bias": False}],
    "x_shape": [3, 5],
}


def load_reference(ref: Path):
    sys.path.insert(0, str(ref / "sparse-lora"))  # the built sltrain_linear extension
    spec = importlib.util.spec_from_file_location(
        "splora_linear_reference", ref / "splora" / "splora_linear.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(ref: str) -> None:
    ref_path = Path(ref).resolve()
    splora = load_reference(ref_path)
    commit = subprocess.run(
        ["git", "-C", str(ref_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    c = CONFIG
    torch.manual_seed(SEED)
    layers = [
        splora.SpLoRaLinear(
            spec["in"],
            spec["out"],
            c["r"],
            sp_ratio=c["sp_ratio"],
            lora_alpha=c["lora_alpha"],
            bias=spec["bias"],
        )  # fmt: skip
        for spec in c["layers"]
    ]
    out, counts = {}, []
    gen = torch.Generator().manual_seed(11)
    for i, layer in enumerate(layers):
        names = ["lora_A", "lora_B", "sparse_value", *(["bias"] if layer.bias is not None else [])]
        for name in [*names, "sparse_index"]:
            out[f"{i}.init.{name}"] = getattr(layer, name).detach().clone()
        counts.append(sum(p.numel() for p in layer.parameters() if p.requires_grad))
        with torch.no_grad():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.2)
        out[f"{i}.loaded.lora_B"] = layer.lora_B.detach().clone()
        x = torch.randn(*c["x_shape"], layer.in_features, generator=gen).requires_grad_(True)
        y = layer(x)
        upstream = torch.randn(y.shape, generator=gen)
        y.backward(upstream)
        out[f"{i}.x"], out[f"{i}.upstream"], out[f"{i}.y"] = x.detach(), upstream, y.detach()
        out[f"{i}.grad.x"] = x.grad.detach().clone()
        for name in names:
            out[f"{i}.grad.{name}"] = getattr(layer, name).grad.detach().clone()
        with torch.no_grad():
            eye = layer(torch.eye(layer.in_features))
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
            out[f"{i}.weight"] = (eye - bias).T.contiguous()
    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "andyjm3/SLTrain",
        "commit": commit,
        "files": ["splora/splora_linear.py", "sparse-lora/sparse_linear.cpp"],
        "command": "python tests/golden/sltrain/generate.py REF (extension built in REF)",
        "config": c,
        "counts": counts,
        "torch": torch.__version__,
        "notes": "bias drawn before lora_A; support sorted; W rebuilt from factors",
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
