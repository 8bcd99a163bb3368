"""Golden fixture for LoRA-XS, from the authors' code.

Repository: MohammadrezaBanaei/LoRA-XS, commit e50b1a82b5d7b7e87a0c46bc62e07e54f6648d31.
Files used: utils/initialization_utils.py (find_and_initialize), utils/svd_utils.py
(get_linear_rec_svd: sklearn TruncatedSVD), utils/latent_utils.py (forward_latent,
get_delta_weight), config/reconstruct_config.yaml (reconstr_mode separated, r_squared
true, n_iter 10, random_state 42), main_glue.py (LoraConfig: lora_alpha 16, dropout 0).
The reference is imported from the checkout (utils/ on sys.path) and run on a one-layer
module wrapped by Hugging Face PEFT (the installed peft, as the reference expects a
peft.tuners.lora.Linear).

Command (from the peftbench repository root, reference checked out at REF):
    /work/main/.venv/bin/python tests/golden/lora-xs/generate.py REF

What it stores (CPU, float32):
- `layer` (d_in 24, d_out 16, r 4, alpha 16): W0 and b0, the reference's lora_B (U_r),
  lora_A (Sigma_r V_r^T) and latent R after find_and_initialize with the repository's own
  reconstruct config (randomised TruncatedSVD, n_iter 10, random_state 42);
- after loading a fixed R into the reference's latent mapping: the output for a fixed x,
  R's gradient for a fixed upstream gradient, the delta weight (get_delta_weight) and the
  trainable count;
- `r_stats`: mean/std of the latent R the reference draws for r = 32 (normal_, std 1e-5,
  from the global RNG), compared as a distribution.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


class OneLayer(torch.nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.query = torch.nn.Linear(d_in, d_out)

    def forward(self, x):
        return self.query(x)


def reference_layer(ref_path: Path, weight, bias, r: int, alpha: float, seed: int):
    from peft import LoraConfig, inject_adapter_in_model
    from utils.initialization_utils import find_and_initialize

    torch.manual_seed(seed)
    model = OneLayer(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        model.query.weight.copy_(weight)
        model.query.bias.copy_(bias)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["query"])
    model = inject_adapter_in_model(config, model)
    reconstruct = yaml.safe_load((ref_path / "config" / "reconstruct_config.yaml").read_text())
    reconstruct["svd"]["rank"] = r
    find_and_initialize(model, {"default": config}, "default", "svd", reconstruct, None)
    return model, reconstruct


def main(ref: str) -> None:
    ref_path = Path(ref).resolve()
    sys.path.insert(0, str(ref_path))
    commit = subprocess.run(
        ["git", "-C", str(ref_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()

    d_in, d_out, r, alpha = 24, 16, 4, 16.0
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(d_out, d_in, generator=gen) * 0.2
    b0 = torch.randn(d_out, generator=gen) * 0.1
    model, reconstruct = reference_layer(ref_path, w0, b0, r, alpha, seed=0)
    layer = model.query
    ref_b = layer.lora_B["default"].weight.detach().clone()
    ref_a = layer.lora_A["default"].weight.detach().clone()
    ref_r = layer.default_lora_latent_mapping.weight.detach().clone()

    # Forward, gradient and delta with a fixed (larger) R loaded into the reference.
    r_loaded = torch.randn(r, r, generator=gen) * 0.1
    with torch.no_grad():
        layer.default_lora_latent_mapping.weight.copy_(r_loaded)
    x = torch.randn(3, 5, d_in, generator=gen)
    upstream = torch.randn(3, 5, d_out, generator=gen)
    out = model(x)
    out.backward(upstream)
    grad_r = layer.default_lora_latent_mapping.weight.grad.detach().clone()
    with torch.no_grad():
        delta = layer.get_delta_weight("default").detach().clone()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    scaling = layer.scaling["default"]

    # R's init distribution on a larger rank.
    gen_big = torch.Generator().manual_seed(4)
    w_big = torch.randn(48, 40, generator=gen_big)
    big, _ = reference_layer(ref_path, w_big, torch.zeros(48), 32, alpha, seed=5)
    big_r = big.query.default_lora_latent_mapping.weight.detach()

    tensors = {
        "W0": w0,
        "b0": b0,
        "lora_B": ref_b,
        "lora_A": ref_a,
        "init_R": ref_r,
        "R": r_loaded,
        "x": x,
        "upstream": upstream,
        "out": out.detach(),
        "grad_R": grad_r,
        "delta": delta,
    }
    exact = torch.linalg.svd(w0, full_matrices=False)
    best = (exact.U[:, :r] * exact.S[:r]) @ exact.Vh[:r]
    meta = {
        "repo": "MohammadrezaBanaei/LoRA-XS",
        "commit": commit,
        "files": [
            "utils/initialization_utils.py (find_and_initialize)",
            "utils/svd_utils.py (get_linear_rec_svd)",
            "utils/latent_utils.py (forward_latent, get_delta_weight)",
            "config/reconstruct_config.yaml",
            "main_glue.py (LoraConfig)",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/lora-xs/generate.py REF",
        "config": {
            "d_in": d_in,
            "d_out": d_out,
            "r": r,
            "alpha": alpha,
            "scaling": scaling,
            "reconstruct_config": reconstruct,
            "r_stats_rank": 32,
        },
        "trainable": trainable,
        "r_stats": {"mean": float(big_r.mean()), "std": float(big_r.std()), "nominal_std": 1e-5},
        "notes": (
            "The reference uses sklearn's randomised TruncatedSVD (n_iter 10, random_state "
            "42) of W0^T; peftbench uses the exact torch.linalg.svd. On this 16 x 24 matrix "
            "the reference's rank-4 product lora_B @ lora_A differs from the exact best "
            "rank-4 approximation by max "
            f"{float((ref_b @ ref_a - best).abs().max()):.2e}, so B and A are compared "
            "directly (up to the sign of each singular pair) at the fixture tolerance. "
            "peft " + __import__("peft").__version__ + " wraps the layer. R is drawn by the "
            "reference from the global RNG (normal_, std 1e-5); it is compared through r_stats."
        ),
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(HERE / "fixture.safetensors"))
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
