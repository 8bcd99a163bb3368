"""Golden fixture for LoLDU, from the authors' code.

Repository: SKDDJ/LoLDU, commit 4fe87a05a668006f55153539cece7fffa91ed91d.
Files used: minloldu/loldu.py (ldu_decomposition, LoLDUParametrization.from_linear with
its defaults rank 4 -> set here, lora_alpha 1, init_loldu_weights 'ldu', init_method 'lu';
add_loldu), minloldu/loldu_utils.py (get_loldu_params: the parameters the official
optimiser gets, name_is_loldu), README.md (freeze everything, then enable
get_loldu_params). The package is imported from the checkout; it imports `lightning`
(for LightningModule), so the script runs in a scratch venv that has it
(`python -m venv --system-site-packages` from the project's Python plus `pip install
lightning`, with the project's site-packages on its path for torch).

Command (from the peftbench repository root, reference checked out at REF):
    VENV/bin/python tests/golden/loldu/generate.py REF

What it stores (CPU, float32; d_in 24, d_out 16, r 4, alpha 1): W0, b0; the reference's
P, lora_B (L_r), vector_z (D_r), lora_A (U_r), scaling_factor and W_res (the
parametrization's `original`, which the reference overwrites with the residual); the
names and sizes of the parameters get_loldu_params gives the optimiser; then, with a fixed
vector_z loaded, the output for a fixed x, the gradients of vector_z and scaling_factor
for a fixed upstream gradient (the reference computes the scale's gradient but does not
optimise it), and the delta weight (parametrized weight - W0).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).resolve().parent


def main(ref: str) -> None:
    ref_path = Path(ref).resolve()
    sys.path.insert(0, str(ref_path))
    from minloldu import LoLDUParametrization, add_loldu, get_loldu_params

    commit = subprocess.run(
        ["git", "-C", str(ref_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    d_in, d_out, r, alpha = 24, 16, 4, 1.0
    gen = torch.Generator().manual_seed(5)
    w0 = torch.randn(d_out, d_in, generator=gen) * 0.3
    b0 = torch.randn(d_out, generator=gen) * 0.1

    model = nn.Sequential(nn.Linear(d_in, d_out))
    with torch.no_grad():
        model[0].weight.copy_(w0)
        model[0].bias.copy_(b0)
    config = {
        nn.Linear: {"weight": partial(LoLDUParametrization.from_linear, rank=r, lora_alpha=alpha)}
    }
    add_loldu(model, loldu_config=config)
    # README: freeze everything, then enable the LoLDU parameters.
    for p in model.parameters():
        p.requires_grad = False
    official = dict(
        (n, p) for n, p in model.named_parameters() if any(p is q for q in get_loldu_params(model))
    )
    for p in official.values():
        p.requires_grad = True
    par = model[0].parametrizations.weight[0]
    init = {
        "P": par.P.detach().clone(),
        "L_r": par.lora_B.detach().clone(),
        "D_r": par.vector_z.detach().clone(),
        "U_r": par.lora_A.detach().clone(),
        "scaling_factor": par.scaling_factor.detach().clone().reshape(1),
        "W_res": model[0].parametrizations.weight.original.detach().clone(),
        "weight_at_init": model[0].weight.detach().clone(),
    }
    # The scale is an nn.Parameter too: let it take a gradient (not optimised officially).
    par.scaling_factor.requires_grad_(True)
    z = init["D_r"] + torch.randn(r, generator=gen) * 0.2
    with torch.no_grad():
        par.vector_z.copy_(z)
    x = torch.randn(3, 5, d_in, generator=gen)
    upstream = torch.randn(3, 5, d_out, generator=gen)
    out = model(x)
    out.backward(upstream)
    with torch.no_grad():
        delta = model[0].weight - w0

    tensors = {
        "W0": w0,
        "b0": b0,
        **init,
        "z": z,
        "x": x,
        "upstream": upstream,
        "out": out.detach(),
        "grad_z": par.vector_z.grad.detach().clone(),
        "grad_scale": par.scaling_factor.grad.detach().clone().reshape(1),
        "delta": delta,
    }
    meta = {
        "repo": "SKDDJ/LoLDU",
        "commit": commit,
        "files": ["minloldu/loldu.py", "minloldu/loldu_utils.py", "README.md"],
        "command": "VENV/bin/python tests/golden/loldu/generate.py REF (VENV: see docstring)",
        "config": {"d_in": d_in, "d_out": d_out, "r": r, "alpha": alpha},
        "optimised": {n: p.numel() for n, p in official.items()},
        "notes": (
            "Run with torch "
            + torch.__version__
            + " and lightning "
            + __import__("lightning").__version__
            + ". The official optimiser trains vector_z only (get_loldu_params filters on "
            "that name); scaling_factor is an nn.Parameter whose gradient is computed but "
            "never applied. P is stored as the matrix; peftbench keeps it as an index "
            "vector (P @ M == M[perm])."
        ),
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(HERE / "fixture.safetensors"))
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
