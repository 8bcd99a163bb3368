"""Golden fixture for DCT-AdamW, produced by the official package.

Package: ista-daslab-optimizers 1.1.15 (PyPI; the same files as
IST-DASLab/ISTA-DASLab-Optimizers@4c98e6e7d8a51147cc8fdd77458baac881852b56), files run:
ista_daslab_optimizers/fft_low_rank/dct_adamw.py (DCTAdamW), fft_low_rank/fft_projector.py
(FFTLowRankProjector) and utils/dct.py (dct3_matrix), on CPU. Installed outside this
project, without dependencies:

    pip install --no-deps --target /tmp/ista-site ista-daslab-optimizers==1.1.15
    python tests/golden/dct-adamw/generate.py /tmp/ista-site

The package's __init__ imports its CUDA-only optimisers (and wandb); it is bypassed by
registering an empty package module whose __path__ is the installed folder, so that only
the fft_low_rank modules and their utils are imported. Nothing is replaced.

Stored, for each case: the initial tensors (two projected weights sharing their smaller
side 8, a tall 12 x 8 and a wide 8 x 16, and a 1-D tensor that gets plain AdamW), the
fixed gradient noise (each step's gradient is noise_t + 0.5 W_t), the lr of each step,
and after every step each tensor, its moments m and v, and the selected indices.
rank 3, weight decay 0.1, 6 steps; cases: refresh every step (the default), every 3
steps, and every step with error feedback (use_ef, unquantised).
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
    "weight_decay": 0.1,
    "steps": 6,
    "lrs": [0.005, 0.01, 0.01, 0.008, 0.006, 0.004],
    "shapes": {"w_tall": [12, 8], "w_wide": [8, 16], "vec": [8]},
    "projected": ["w_tall", "w_wide"],
    "grad_weight": 0.5,
    "seed": 0,
    "cases": {
        "gap1": {"update_proj_gap": 1, "use_ef": False},
        "gap3": {"update_proj_gap": 3, "use_ef": False},
        "ef": {"update_proj_gap": 1, "use_ef": True},
    },
}


def _import_dct_adamw(site: Path):
    pkg = types.ModuleType("ista_daslab_optimizers")
    pkg.__path__ = [str(site / "ista_daslab_optimizers")]
    sys.modules["ista_daslab_optimizers"] = pkg
    from ista_daslab_optimizers.fft_low_rank.dct_adamw import DCTAdamW

    return DCTAdamW


def run(dct_adamw, tensors: dict, case: str) -> dict[str, torch.Tensor]:
    c, opts = CONFIG, CONFIG["cases"][case]
    params = parameters(tensors, c)
    opt = dct_adamw(list(params.values()), lr=c["lrs"][0], weight_decay=c["weight_decay"],
                    rank=c["rank"], proj="dct", use_ef=opts["use_ef"],
                    update_proj_gap=opts["update_proj_gap"])  # fmt: skip
    out = {}
    for t in replay(opt, params, tensors, c):
        for k, p in params.items():
            state = opt.state[p]
            out[f"{case}.step{t}.{k}"] = p.detach().clone()
            out[f"{case}.step{t}.{k}.m"] = state["m"].clone()
            out[f"{case}.step{t}.{k}.v"] = state["v"].clone()
            if "fft-low-rank-projector" in state:
                idx = state["fft-low-rank-projector"].indices_crt
                out[f"{case}.step{t}.{k}.indices"] = idx.clone()
            if "ef" in state:
                out[f"{case}.step{t}.{k}.ef"] = state["ef"].clone()
    out["Q"] = opt.Q.clone()
    return out


def main(site: Path) -> None:
    dct_adamw = _import_dct_adamw(site)
    tensors = initial(CONFIG)
    out = dict(tensors)
    for case in CONFIG["cases"]:
        out.update(run(dct_adamw, tensors, case))
    meta = {
        "repo": "ista-daslab-optimizers 1.1.15 (PyPI; IST-DASLab/ISTA-DASLab-Optimizers)",
        "commit": "4c98e6e7d8a51147cc8fdd77458baac881852b56",
        "files": [
            "ista_daslab_optimizers/fft_low_rank/dct_adamw.py",
            "ista_daslab_optimizers/fft_low_rank/fft_projector.py",
            "ista_daslab_optimizers/utils/dct.py",
        ],
        "command": "pip install --no-deps --target DIR ista-daslab-optimizers==1.1.15; "
        "python tests/golden/dct-adamw/generate.py DIR",
        "config": CONFIG,
        "defaults": {"eps": 1e-8, "betas": [0.9, 0.999], "ell_norm": 1},
        "notes": "The package __init__ (CUDA optimisers, wandb) is bypassed; the fft_low_rank "
        "modules run as shipped. Every 2-D tensor here is projected by the package (both "
        "under 32,000 per side) and they share the smaller side 8, so its single Q fits.",
    }
    write_fixture(HERE, out, meta)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
