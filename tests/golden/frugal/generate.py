"""Golden fixture for FRUGAL, produced by its official code.

Repository: philipzmr/FRUGAL (the README is the official one), at its author's init
commit c7ebe4c242f7908e036c287e3a10512a84634648, read from the copy
hungquangbui02022003/FRUGAL (philipzmr/FRUGAL itself could not be fetched; the copy's
later commits are another author's and are not used). Files run:
frugal/proj_optimizer_templates.py (ProjOptimizer, GaloreOptimizer, CoordOptimizer,
BlockOptimizer), frugal/adamw.py (AdamW, GaloreAdamW, CoordAdamW, BlockAdamW),
frugal/galore_projector.py, frugal/coordinate_projector.py.

Command (from the peftbench repository root):

    git clone <hungquangbui02022003/FRUGAL> /tmp/frugal && git -C /tmp/frugal checkout c7ebe4c
    python tests/golden/frugal/generate.py /tmp/frugal

Shim: frugal/adamw.py imports `torch.optim.optimizer._dispatch_sqrt`, a private helper
that torch 2.13 no longer has; it is set to its old definition (math.sqrt of a float)
before the import. Nothing else is replaced.

Stored, for each case: the initial tensors (four projectable weights 12 x 8, 6 x 10,
8 x 8, 10 x 6 and two regular tensors, 2-D and 1-D), the fixed gradient noise (each
step's gradient is noise_t + 0.5 W_t), the lr of each step, and after every step each
tensor and its moments (absent for inactive blocks), plus each refresh's chosen
coordinates. density 0.5, update_gap 3 (refreshes at steps 0, 3, 6, moments reset),
proj_params_lr_scale 0.8, inactive_lr_scale 0.1, sign_sgd, weight decay 0.01, 7 steps.
Random draws: torch.manual_seed(draw_seed) right before the first step; the draws are
the reference's own torch.randperm calls on the global generator.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for the shared set-up
from tests.golden.fixed_tensors import initial, parameters, replay, write_fixture  # noqa: E402

CONFIG = {
    "density": 0.5,
    "update_gap": 3,
    "proj_lr_scale": 0.8,
    "inactive_lr_scale": 0.1,
    "weight_decay": 0.01,
    "steps": 7,
    "lrs": [0.005, 0.01, 0.01, 0.008, 0.006, 0.004, 0.002],
    "shapes": {
        "w_a": [12, 8],
        "w_b": [6, 10],
        "w_c": [8, 8],
        "w_d": [10, 6],
        "reg_2d": [5, 4],
        "reg_1d": [8],
    },  # fmt: skip
    "projected": ["w_a", "w_b", "w_c", "w_d"],
    "grad_weight": 0.5,
    "seed": 0,
    "draw_seed": 1234,
    "cases": {
        "columns": {"class": "CoordAdamW", "coord_choice": "columns"},
        "rows": {"class": "CoordAdamW", "coord_choice": "rows"},
        "randk": {"class": "CoordAdamW", "coord_choice": "randk"},
        "svd": {"class": "GaloreAdamW", "proj_type": "svd", "proj_side": "std"},
        "block_random": {"class": "BlockAdamW", "block_order": "random"},
        "block_descending": {"class": "BlockAdamW", "block_order": "descending"},
    },
}


def build(frugal, params: dict, case: str):
    c, opts = CONFIG, dict(CONFIG["cases"][case])
    cls = getattr(frugal, opts.pop("class"))
    groups = [
        {"params": [p for k, p in params.items() if k not in c["projected"]],
         "is_proj_params": False},
        {"params": [params[k] for k in c["projected"]], "is_proj_params": True},
    ]  # fmt: skip
    return cls(groups, proj_params_lr_scale=c["proj_lr_scale"], update_gap=c["update_gap"],
               density=c["density"], reset_statistics=True, inactive_update_rule="sign_sgd",
               inactive_lr_scale=c["inactive_lr_scale"], lr=c["lrs"][0],
               weight_decay=c["weight_decay"], no_deprecation_warning=True, **opts)  # fmt: skip


def chosen(state: dict) -> torch.Tensor | None:
    proj = state.get("projector")
    if proj is None:
        return None
    if hasattr(proj, "indices"):
        idx = proj.indices
        return torch.stack(idx) if isinstance(idx, tuple) else idx.clone()
    return proj.ortho_matrix.clone()


def run(frugal, tensors: dict, case: str) -> dict[str, torch.Tensor]:
    c = CONFIG
    params = parameters(tensors, c)
    opt = build(frugal, params, case)
    torch.manual_seed(c["draw_seed"])
    out = {}
    for t in replay(opt, params, tensors, c):
        for k, p in params.items():
            state, key = opt.state[p], f"{case}.step{t}.{k}"
            out[key] = p.detach().clone()
            if "exp_avg" in state:
                out[f"{key}.exp_avg"] = state["exp_avg"].clone()
                out[f"{key}.exp_avg_sq"] = state["exp_avg_sq"].clone()
            picked = chosen(state)
            if picked is not None:
                out[f"{key}.chosen"] = picked
    return out


def main(ref: Path) -> None:
    import torch.optim.optimizer as optimizer_module

    optimizer_module._dispatch_sqrt = lambda x: x.sqrt() if torch.is_tensor(x) else math.sqrt(x)
    sys.path.insert(0, str(ref))
    import frugal

    tensors = initial(CONFIG)
    out = dict(tensors)
    for case in CONFIG["cases"]:
        out.update(run(frugal, tensors, case))
    meta = {
        "repo": "philipzmr/FRUGAL (read from the copy hungquangbui02022003/FRUGAL)",
        "commit": "c7ebe4c242f7908e036c287e3a10512a84634648",
        "files": [
            "frugal/proj_optimizer_templates.py",
            "frugal/adamw.py",
            "frugal/galore_projector.py",
            "frugal/coordinate_projector.py",
        ],
        "command": "python tests/golden/frugal/generate.py <checkout at c7ebe4c>",
        "config": CONFIG,
        "defaults": {"eps": 1e-8, "betas": [0.9, 0.999]},
        "notes": "torch.optim.optimizer._dispatch_sqrt shimmed (removed from torch). The "
        "global generator is seeded right before the first step; the reference draws "
        "torch.randperm per projectable tensor in group order at each refresh (coordinates) "
        "or once per refresh (blocks).",
    }
    write_fixture(HERE, out, meta)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
