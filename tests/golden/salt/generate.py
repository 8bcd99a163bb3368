"""Golden fixture for SALT, from the authors' code.

Repository: BioMedIA-MBZUAI/SALT, commit 7314877a987221cbb499e836220a090c35fc60e1.
Files used: main.py:179-187 (the trained set: names containing 'trainable');
prompt_adapted_SAM2/modeling/Adapters/SALT.py (SALTLinear: rank =
max(1, int(k * ratio_salt)), trainable_scale_A ones, trainable_shift_B zeros,
trainable_X kaiming_uniform_(a=sqrt 20, fan_in, relu) after torch.manual_seed(seed),
trainable_Y zeros, get_modified_singular_values, forward U relu(S') Vt). SALT.py is loaded
by file path (the package's __init__ files pull in SAM2); it imports einops, so the script
runs in a scratch venv that has it (the project's Python, `pip install einops`).

Command (from the peftbench repository root, reference checked out at REF):
    VENV/bin/python tests/golden/salt/generate.py REF

What it stores (CPU, float32; d_in 24, d_out 16, ratio 0.25 -> r = 4, r_lora 3, seed 42):
W0, b0; the initial trainable tensors; then, with fixed trainable values loaded (one top
singular value driven negative so the ReLU clips), the output for a fixed x, the four
gradients for a fixed upstream gradient and the delta weight (U relu(S') Vt - W0, read
from the reference's forward on the identity); then pin_svd.py adds the reference's
singular basis of W0 (svd.U, svd.S, svd.Vh), which the layer's function depends on.
`x_stats`: mean/std/max|.| of X for a 256 x 256 layer at ratio 0.1 and r_lora 8 (231 x 8
entries).
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
NAMES = ("trainable_scale_A", "trainable_shift_B", "trainable_X", "trainable_Y")


def main(ref: str) -> None:
    ref_path = Path(ref).resolve()
    spec = importlib.util.spec_from_file_location(
        "salt_reference", ref_path / "prompt_adapted_SAM2/modeling/Adapters/SALT.py"
    )
    salt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(salt)
    commit = subprocess.run(
        ["git", "-C", str(ref_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()

    d_in, d_out, ratio, r_lora, seed = 24, 16, 0.25, 3, 42
    layer = salt.SALTLinear(d_in, d_out, ratio_salt=ratio, r_lora=r_lora, seed=seed)
    init = {f"init.{n}": getattr(layer, n).detach().clone() for n in NAMES}
    # main.py:179-187 (training_strategy 'salt'): freeze all, then train every parameter
    # whose name contains 'trainable' (SALTLinear leaves its bias requires_grad=True, but
    # main.py freezes it).
    trainable = sum(p.numel() for n, p in layer.named_parameters() if "trainable" in n)

    gen = torch.Generator().manual_seed(9)
    w0 = torch.randn(d_out, d_in, generator=gen) * 0.3
    b0 = torch.randn(d_out, generator=gen) * 0.1
    loaded = {
        "trainable_scale_A": 1 + 0.2 * torch.randn(layer.rank, generator=gen),
        "trainable_shift_B": 0.1 * torch.randn(layer.rank, generator=gen),
        "trainable_X": torch.randn(*init["init.trainable_X"].shape, generator=gen),
        "trainable_Y": 0.3 * torch.randn(*init["init.trainable_Y"].shape, generator=gen),
    }
    loaded["trainable_shift_B"][1] = -50.0  # the second singular value goes negative
    with torch.no_grad():
        layer.weight.copy_(w0)
        layer.bias.copy_(b0)
        for n, v in loaded.items():
            getattr(layer, n).copy_(v)
    # done_svd is still False: the first forward takes the SVD of the loaded W0.
    x = torch.randn(3, 5, d_in, generator=gen)
    upstream = torch.randn(3, 5, d_out, generator=gen)
    out, _reg = layer(x)
    out.backward(upstream)
    grads = {f"grad.{n}": getattr(layer, n).grad.detach().clone() for n in NAMES}
    with torch.no_grad():
        weight = (layer(torch.eye(d_in))[0] - b0).T
    new_s, _, _ = layer.get_modified_singular_values()
    clipped = int((new_s < 0).sum())

    torch.manual_seed(0)
    big = salt.SALTLinear(256, 256, ratio_salt=0.1, r_lora=8, seed=seed + 1)
    big_x = big.trainable_X.detach()

    tensors = {
        "W0": w0,
        "b0": b0,
        **init,
        **{f"loaded.{n}": v for n, v in loaded.items()},
        "x": x,
        "upstream": upstream,
        "out": out.detach(),
        **grads,
        "delta": weight - w0,
    }
    meta = {
        "repo": "BioMedIA-MBZUAI/SALT",
        "commit": commit,
        "files": [
            "prompt_adapted_SAM2/modeling/Adapters/SALT.py (SALTLinear)",
            "main.py (the trained set for training_strategy 'salt')",
        ],
        "command": "VENV/bin/python tests/golden/salt/generate.py REF (VENV: see docstring)",
        "config": {
            "d_in": d_in,
            "d_out": d_out,
            "ratio": ratio,
            "r_lora": r_lora,
            "seed": seed,
            "rank": layer.rank,
            "x_stats_layer": {"d": 256, "ratio": 0.1, "r_lora": 8},
        },
        "trainable": trainable,
        "clipped_entries": clipped,
        "x_stats": {
            "shape": list(big_x.shape),
            "mean": float(big_x.mean()),
            "std": float(big_x.std()),
            "absmax": float(big_x.abs().max()),
            "bound": (6 / 8) ** 0.5,
        },
        "notes": (
            "Run with torch " + torch.__version__ + ". X is drawn by kaiming_uniform_ from "
            "the global RNG right after torch.manual_seed(seed), so for seed 42 it is the "
            "first draw of a generator seeded 42; every SALTLinear of the reference re-seeds "
            "with the same seed (default 42). reg_loss is returned but unused "
            "(SALT_config.yml reg_multiplier 0). main.py also trains every norm and "
            "pos_embed of SAM2 (protocol, not part of the layer)."
        ),
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(HERE / "fixture.safetensors"))
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    # The reference's singular basis of W0 (its sign choice is the running LAPACK's).
    subprocess.run([sys.executable, str(HERE / "pin_svd.py")], check=True)


if __name__ == "__main__":
    main(sys.argv[1])
