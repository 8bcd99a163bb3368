"""Golden fixture for SoRA, produced by the authors' own code.

Repository: TsinghuaC3I/SoRA, commit c275ac237b68b888a918cf9dad36d3827e46f616.
Files run: src/lora.py (LowRankLinear: the gated low-rank branch),
src/sparse_optimizer.py (SparseAdamW: the gates' AdamW step followed by the threshold
step p[p > l] -= l; p[p < -l] += l; p[|p| < l] = 0, and its lambda schedules).

Command (from the peftbench repository root), with a Python whose transformers still
has `transformers.AdamW` (SoRA pins 4.14.1; 4.30.2 was used, in a venv layered on the
project's):

    python tests/golden/sora/generate.py /path/to/TsinghuaC3I-SoRA

Stubs: src/lora.py imports `opendelta` for its LoraModel wrapper (DeltaBase,
BaseDeltaConfig, name-based addressing); those names are stubbed in sys.modules
(unused by LowRankLinear). Nothing else is replaced.

Stored: LowRankLinear's init (A, gate) for distribution checks; with fixed A, B, gate
loaded: the branch output for a fixed input, the gradients of A, B and gate for a fixed
upstream gradient, the delta weight (the branch applied to the identity, transposed);
SparseAdamW's gate trajectory over 5 steps of fixed gradients at lr 1e-3 and over 3
steps at lr 0 (the threshold alone), lambda_2 = 1e-3; the linear and log-linear lambda
lists.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
COMMIT = "c275ac237b68b888a918cf9dad36d3827e46f616"
CONFIG = {
    "d_in": 24,
    "d_out": 16,
    "r": 4,
    "alpha": 8,
    "seed": 0,
    "sparse_lambda_2": 1e-3,
    "lr": 1e-3,
    "adam_steps": 5,
    "threshold_steps": 3,
    "schedule": {"sparse_lambda_2": 1e-4, "max_lambda": 7e-4, "lambda_num": 7},
}


def _stub_opendelta() -> None:
    names = [
        "opendelta",
        "opendelta.utils",
        "opendelta.utils.signature",
        "opendelta.utils.name_based_addressing",
        "opendelta.basemodel",
    ]
    mods = {n: types.ModuleType(n) for n in names}
    mods["opendelta.utils.signature"].get_arg_names = lambda *a, **k: []
    mods["opendelta.utils.signature"].get_arg_names_inside_func = lambda *a, **k: []
    mods["opendelta.utils.name_based_addressing"].List = typing.List  # noqa: UP006
    mods["opendelta.utils.name_based_addressing"].__all__ = ["List"]
    mods["opendelta.basemodel"].DeltaBase = type("DeltaBase", (torch.nn.Module,), {})
    mods["opendelta"].BaseDeltaConfig = type("BaseDeltaConfig", (), {})
    sys.modules.update(mods)


def main(ref: Path) -> None:
    sys.path.insert(0, str(ref))
    _stub_opendelta()
    from src.lora import LowRankLinear
    from src.sparse_optimizer import SparseAdamW

    c = CONFIG
    out = {}
    torch.manual_seed(c["seed"])
    weight = torch.randn(c["d_out"], c["d_in"])
    layer = LowRankLinear(c["d_in"], c["d_out"], weight, r=c["r"], lora_alpha=c["alpha"])
    out["init.lora_A"] = layer.lora_A.detach().clone()
    out["init.lora_B"] = layer.lora_B.detach().clone()
    out["init.gate"] = layer.gate.detach().clone()

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        layer.lora_A.copy_(torch.randn(c["r"], c["d_in"], generator=gen) * 0.2)
        layer.lora_B.copy_(torch.randn(c["d_out"], c["r"], generator=gen) * 0.2)
        layer.gate.copy_(torch.randn(1, c["r"], generator=gen))
    x = torch.randn(5, c["d_in"], generator=gen)
    upstream = torch.randn(5, c["d_out"], generator=gen)
    y = layer(x)
    (y * upstream).sum().backward()
    out.update(
        {
            "loaded.lora_A": layer.lora_A.detach().clone(),
            "loaded.lora_B": layer.lora_B.detach().clone(),
            "loaded.gate": layer.gate.detach().clone(),
            "x": x,
            "upstream": upstream,
            "update": y.detach(),
            "grad.lora_A": layer.lora_A.grad.clone(),
            "grad.lora_B": layer.lora_B.grad.clone(),
            "grad.gate": layer.gate.grad.clone(),
        }
    )
    with torch.no_grad():
        out["delta_weight"] = layer(torch.eye(c["d_in"])).T.clone()
    count = sum(p.numel() for p in layer.parameters())

    lam = c["sparse_lambda_2"]
    gate0 = torch.tensor([-0.9, -2.5, -1.5, -0.9, -0.5, 0.0, 0.4, 0.9, 1.1, 1.9, 2.1, 700.0]) * lam
    out["prox.gate0"] = gate0
    grads = torch.randn(c["adam_steps"], len(gate0), generator=gen) * 1e-3
    out["prox.grads"] = grads
    for lr, steps, key in (
        (c["lr"], c["adam_steps"], "adam"),
        (0.0, c["threshold_steps"], "threshold"),
    ):
        gate = torch.nn.Parameter(gate0.clone())
        opt = SparseAdamW(sparse_lambda=lam, params=[gate], lr=lr)
        for t in range(steps):
            gate.grad = grads[t].clone() if lr else torch.zeros_like(gate)
            opt.step()
            out[f"prox.{key}.step{t + 1}"] = gate.detach().clone()

    s = c["schedule"]
    lambdas = {}
    for kind in ("linear", "log_linear"):
        opt = SparseAdamW(
            sparse_lambda=s["sparse_lambda_2"],
            lambda_schedule=kind,
            max_lambda=s["max_lambda"],
            lambda_num=s["lambda_num"],
            params=[torch.nn.Parameter(torch.zeros(1))],
            lr=0.0,
        )
        lambdas[kind] = [float(v) for v in opt._lambdas]

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "TsinghuaC3I/SoRA",
        "commit": COMMIT,
        "files": ["src/lora.py", "src/sparse_optimizer.py"],
        "command": "python tests/golden/sora/generate.py <TsinghuaC3I/SoRA checkout>  (transformers 4.30.2)",
        "config": CONFIG,
        "trainable_params": int(count),
        "lambdas": lambdas,
        "adamw": {
            "class": "transformers.AdamW (via SparseAdamW)",
            "eps": opt.defaults["eps"],
            "betas": list(opt.defaults["betas"]),
            "weight_decay": opt.defaults["weight_decay"],
            "correct_bias": opt.defaults["correct_bias"],
        },
        "notes": (
            "opendelta is stubbed (src/lora.py imports it for LoraModel only). "
            "SparseAdamW is transformers.AdamW's step (eps 1e-6 default, bias correction "
            "folded into the step size) followed by the three masked threshold updates, "
            "which zero every |g| < 2 lambda in effect. run_glue.py gives the gates their "
            "own SparseAdamW (lr = sparse_lr, default the main lr, no weight decay) and "
            "the rest transformers.AdamW (eps = adam_epsilon 1e-8)."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
