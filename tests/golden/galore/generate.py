"""Golden fixture for GaLore, produced by the official package.

Package: galore-torch 1.0 (PyPI; jiaweizzhao/GaLore), files run: galore_torch/adamw.py
(AdamW.step) and galore_torch/galore_projector.py (GaLoreProjector, proj_type std and
reverse_std). Installed outside this project, without dependencies:

    pip install --no-deps --target /tmp/galore-site galore-torch==1.0
    python tests/golden/galore/generate.py /tmp/galore-site

Stubs: galore_torch/__init__.py imports its 8-bit variant, which imports bitsandbytes;
`bitsandbytes.optim.optimizer.Optimizer2State` is stubbed in sys.modules (the 8-bit class
is not run). transformers (for `require_version`) is the project's.

Stored, for each proj_type: the initial tensors (two projected weights, one tall 12 x 8
and one wide 6 x 10, and two regular tensors, 2-D and 1-D), the fixed noise of the
gradients (each step's gradient is noise_t + 0.5 W_t, so it depends on the weights), the
lr of each step (a warmup + decay schedule set on every group before the step, as the
training driver does), and after every step each tensor, its exp_avg / exp_avg_sq and,
for projected tensors, the projection matrix. rank 3, update_proj_gap 3 (P recomputed at
steps 0, 3, 6), scale 0.5, weight decay 0.1, 7 steps.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for the shared set-up
from tests.golden.fixed_tensors import initial, parameters, replay, write_fixture  # noqa: E402

CONFIG = {
    "rank": 3,
    "update_proj_gap": 3,
    "scale": 0.5,
    "weight_decay": 0.1,
    "steps": 7,
    "lrs": [0.005, 0.01, 0.01, 0.008, 0.006, 0.004, 0.002],
    "shapes": {"w_tall": [12, 8], "w_wide": [6, 10], "reg_2d": [5, 4], "reg_1d": [8]},
    "projected": ["w_tall", "w_wide"],
    "proj_types": ["std", "reverse_std"],
    "grad_weight": 0.5,
    "seed": 0,
}


def _stub_bitsandbytes() -> None:
    names = ["bitsandbytes", "bitsandbytes.optim", "bitsandbytes.optim.optimizer"]
    mods = {n: types.ModuleType(n) for n in names}
    mods["bitsandbytes.optim.optimizer"].Optimizer2State = type("Optimizer2State", (), {})
    sys.modules.update(mods)


def run(galore_adamw, tensors: dict, proj_type: str) -> dict[str, torch.Tensor]:
    c = CONFIG
    params = parameters(tensors, c)
    regular = [params[k] for k in c["shapes"] if k not in c["projected"]]
    projected = [params[k] for k in c["projected"]]
    groups = [
        {"params": regular},
        {"params": projected, "rank": c["rank"], "update_proj_gap": c["update_proj_gap"],
         "scale": c["scale"], "proj_type": proj_type},
    ]  # fmt: skip
    opt = galore_adamw(groups, lr=c["lrs"][0], weight_decay=c["weight_decay"],
                       no_deprecation_warning=True)  # fmt: skip
    out = {}
    for t in replay(opt, params, tensors, c):
        for k, p in params.items():
            state = opt.state[p]
            out[f"{proj_type}.step{t}.{k}"] = p.detach().clone()
            out[f"{proj_type}.step{t}.{k}.exp_avg"] = state["exp_avg"].clone()
            out[f"{proj_type}.step{t}.{k}.exp_avg_sq"] = state["exp_avg_sq"].clone()
            if "projector" in state:
                out[f"{proj_type}.step{t}.{k}.projection"] = state["projector"].ortho_matrix.clone()
    return out


def main(site: Path) -> None:
    sys.path.insert(0, str(site))
    _stub_bitsandbytes()
    from galore_torch import GaLoreAdamW

    tensors = initial(CONFIG)
    out = dict(tensors)
    for proj_type in CONFIG["proj_types"]:
        out.update(run(GaLoreAdamW, tensors, proj_type))
    meta = {
        "repo": "galore-torch 1.0 (PyPI; jiaweizzhao/GaLore)",
        "commit": "galore-torch==1.0",
        "files": ["galore_torch/adamw.py", "galore_torch/galore_projector.py"],
        "command": "pip install --no-deps --target DIR galore-torch==1.0; "
        "python tests/golden/galore/generate.py DIR",
        "config": CONFIG,
        "defaults": {"eps": 1e-6, "betas": [0.9, 0.999], "correct_bias": True},
        "notes": "bitsandbytes stubbed (imported by the unused 8-bit variant). The lr of "
        "every group is set before each step, as the training driver's schedule does.",
    }
    write_fixture(HERE, out, meta)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
