"""Golden fixture for NOLA, from the authors' code.

Repository: UCDvision/NOLA, commit 03c7027c244b5ab16de540dd8e37ea4b4e614129.
Files used: gpt/src/model_nola.py (GenerateParams, NOLALinear, LoRA with use_nola=True),
imported as a module (it imports gpt/loralib, so both gpt/src and gpt are on sys.path);
gpt/scripts/finetune_gpt2m_e2e_qv_nola.sh (NUM_BASIS=512, RANK=8, LORA_ALPHA=8) for the
defaults recorded in the config.

Command (from the peftbench repository root, reference checked out at REF):
    /work/main/.venv/bin/python tests/golden/nola/generate.py REF

What it stores (CPU, float32):
- `layer`: a LoRA(use_nola=True) adapter (d_in 24, d_out 16, rank 4, alpha 8, 16 bases for
  A and 12 for B) with fixed seeds for the two NOLALinear layers, its A0 (lora_A.weight,
  drawn by the reference's kaiming_uniform_ from the global RNG) and its bases, read back
  through the reference's own GenerateParams with one-hot coefficients;
- after setting fixed coefficients: the output of base(x) + lora(x), the gradients of both
  coefficient vectors for a fixed upstream gradient, the delta weight (lora applied to the
  identity, transposed) and the trainable count;
- `a0_stats`: mean/std/max|.| of A0 for a larger layer (rank 8, d_in 256), whose values
  come from the global RNG and so are compared as a distribution.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def main(ref: str) -> None:
    ref_path = Path(ref).resolve()
    sys.path[:0] = [str(ref_path / "gpt" / "src"), str(ref_path / "gpt")]
    import model_nola  # the reference module

    commit = subprocess.run(
        ["git", "-C", str(ref_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()

    d_in, d_out, rank, alpha, k_a, k_b = 24, 16, 4, 8.0, 16, 12
    seed_a, seed_b = 1234567, 7654321
    torch.manual_seed(0)
    lora = model_nola.LoRA(d_in, d_out, use_nola=True, num_basis=k_a, rank=rank, alpha=alpha)
    # LoRA() gives both layers the same num_basis; give B its own count, as the reference's
    # NOLALinear would with num_basis=k_b (coefficients zero-initialised like reset_lora_parameters).
    lora.lora_B = model_nola.NOLALinear(rank, d_out, num_basis=k_b, bias=False)
    torch.nn.init.zeros_(lora.lora_B.weight)
    torch.nn.init.zeros_(lora.lora_B.coefficients)
    lora.num_basis_B = k_b
    with torch.no_grad():
        lora.lora_A.seed.fill_(seed_a)
        lora.lora_B.seed.fill_(seed_b)
    init_coef_a = lora.lora_A.coefficients.detach().clone()
    init_coef_b = lora.lora_B.coefficients.detach().clone()
    a0 = lora.lora_A.weight.detach().clone()
    b0 = lora.lora_B.weight.detach().clone()

    gen_params = model_nola.GenerateParams.apply

    def bases(k: int, out_dim: int, in_dim: int, seed) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack(
                [gen_params(torch.eye(k)[j], out_dim, in_dim, seed) for j in range(k)]
            )

    bases_a = bases(k_a, rank, d_in, lora.lora_A.seed)
    bases_b = bases(k_b, d_out, rank, lora.lora_B.seed)

    gen = torch.Generator().manual_seed(1)
    base = torch.nn.Linear(d_in, d_out)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d_out, d_in, generator=gen) * 0.2)
        base.bias.copy_(torch.randn(d_out, generator=gen) * 0.1)
        lora.lora_A.coefficients.copy_(torch.randn(k_a, generator=gen))
        lora.lora_B.coefficients.copy_(torch.randn(k_b, generator=gen))
    x = torch.randn(3, 5, d_in, generator=gen)
    upstream = torch.randn(3, 5, d_out, generator=gen)

    out = base(x) + lora(x)
    out.backward(upstream)
    with torch.no_grad():
        delta = lora(torch.eye(d_in)).T.contiguous()  # rows of lora(I) are (s B A e_i)^T
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)

    # A0's distribution on a larger layer (the reference draws it from the global RNG).
    torch.manual_seed(2)
    big = model_nola.LoRA(256, 16, use_nola=True, num_basis=8, rank=8, alpha=8.0)
    big_a0 = big.lora_A.weight.detach()

    tensors = {
        "seeds": torch.tensor([seed_a, seed_b], dtype=torch.int64),
        "init_coef_A": init_coef_a,
        "init_coef_B": init_coef_b,
        "A0": a0,
        "B0": b0,
        "bases_A": bases_a,
        "bases_B": bases_b,
        "W0": base.weight.detach().clone(),
        "b0": base.bias.detach().clone(),
        "coef_A": lora.lora_A.coefficients.detach().clone(),
        "coef_B": lora.lora_B.coefficients.detach().clone(),
        "x": x,
        "upstream": upstream,
        "out": out.detach(),
        "grad_coef_A": lora.lora_A.coefficients.grad.detach().clone(),
        "grad_coef_B": lora.lora_B.coefficients.grad.detach().clone(),
        "delta": delta,
    }
    meta = {
        "repo": "UCDvision/NOLA",
        "commit": commit,
        "files": [
            "gpt/src/model_nola.py (GenerateParams, NOLALinear, LoRA)",
            "gpt/scripts/finetune_gpt2m_e2e_qv_nola.sh",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/nola/generate.py REF",
        "config": {
            "d_in": d_in,
            "d_out": d_out,
            "rank": rank,
            "alpha": alpha,
            "num_basis_A": k_a,
            "num_basis_B": k_b,
            "scale": lora.scale,
            "script_defaults": {"num_basis": 512, "rank": 8, "alpha": 8, "lr": 0.005},
            "a0_stats_shape": [8, 256],
        },
        "trainable": trainable,
        "a0_stats": {
            "mean": float(big_a0.mean()),
            "std": float(big_a0.std()),
            "absmax": float(big_a0.abs().max()),
            "bound": 1 / 256**0.5,
        },
        "notes": (
            "The reference draws each NOLALinear's bases with torch.manual_seed(seed) and "
            "uniform_(-1, 1) on the coefficients' device, times 1/sqrt(num_basis); on CPU "
            "that is the stream of torch.Generator().manual_seed(seed), so the bases are "
            "compared exactly. A0 comes from the global RNG in the reference and is loaded "
            "into peftbench for the forward/gradient checks; its distribution is compared "
            "through a0_stats. LoRA() gives A and B one num_basis; B is rebuilt with its own "
            "count (12) so a swap of the two counts cannot pass."
        ),
    }
    save_file(tensors, str(HERE / "fixture.safetensors"))
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
