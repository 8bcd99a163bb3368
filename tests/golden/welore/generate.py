"""Golden fixture for WeLore's rank rule, produced by the authors' own code.

Repository: VITA-Group/WeLore, commit 3f3dac6d3535b40a444cb0f12f4b7353bb5a6059. Files run:
lib/rank_utils.py (rank_analysis_weight: fp32 singular values of every linear sublayer),
utils.py (adaptive_rank_pruning: min-max normalised singular values below the threshold
are pruned), lib/rank_reduction.py (do_rank_reduction: a matrix that loses more than
min_ratio of its rank becomes lib/LowRankLayer.py's LowRankLayer, U_k sqrt(S_k) and
sqrt(S_k) V_k^T in bf16; the others stay dense and frozen).

Command (from the peftbench repository root, with the project's venv):

    python tests/golden/welore/generate.py /path/to/VITA-Group-WeLore

Stubbed: `wandb` (imported by lib/rank_utils.py, unused by these functions) is an empty
module, and `logger` a standard logging.Logger. The model is a toy two-layer LLaMA-shaped
module (`model.model.layers[i].self_attn.{q,k,v,o}_proj`, `.mlp.{gate,up,down}_proj`)
whose weights have geometric spectra, so the threshold cuts them at different ranks.
Cases: tau 0.135 (the 50% entry of the LLaMA-2-7B table) and 0.3, each with min_ratio 0.0
(welore_rank_reduction.py) and 0.4999 (the fine-tuning scripts). Stored: the weights,
the pruned rank per matrix, which matrices became low-rank, and (first case, where all
are) the product U V of the reference's bf16 factors.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
COMMIT = "3f3dac6d3535b40a444cb0f12f4b7353bb5a6059"
SHAPES = {
    "self_attn.q_proj": (32, 32), "self_attn.k_proj": (32, 32), "self_attn.v_proj": (32, 32),
    "self_attn.o_proj": (32, 32), "mlp.gate_proj": (48, 32), "mlp.up_proj": (48, 32),
    "mlp.down_proj": (32, 48),
}  # fmt: skip
CASES = {"t0.135-r0": (0.135, 0.0), "t0.135-r0.4999": (0.135, 0.4999),
         "t0.3-r0": (0.3, 0.0), "t0.3-r0.4999": (0.3, 0.4999)}  # fmt: skip
LAYERS = 2


def weights() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {}
    for i in range(LAYERS):
        for j, (name, (m, n)) in enumerate(SHAPES.items()):
            k = min(m, n)
            u = torch.linalg.qr(torch.randn(m, k, generator=gen))[0]
            v = torch.linalg.qr(torch.randn(n, k, generator=gen))[0]
            decay = 0.75 + 0.03 * j + 0.05 * i
            s = decay ** torch.arange(k, dtype=torch.float32) + 0.01
            out[f"{i}.{name}"] = (u * s) @ v.T
    return out


def toy(tensors: dict[str, torch.Tensor]):
    layers = nn.ModuleList()
    for i in range(LAYERS):
        layer = nn.Module()
        layer.self_attn, layer.mlp = nn.Module(), nn.Module()
        for name, (m, n) in SHAPES.items():
            part, proj = name.split(".")
            lin = nn.Linear(n, m, bias=False)
            with torch.no_grad():
                lin.weight.copy_(tensors[f"{i}.{name}"])
            setattr(getattr(layer, part), proj, lin)
        layers.append(layer)
    model = nn.Module()
    model.model = nn.Module()
    model.model.layers = layers
    model.config = SimpleNamespace(use_cache=False)
    return model


def main(repo: Path) -> None:
    from safetensors.torch import save_file

    sys.modules.setdefault("wandb", types.ModuleType("wandb"))
    sys.path.insert(0, str(repo))
    from lib.rank_reduction import do_rank_reduction
    from lib.rank_utils import rank_analysis_weight
    from utils import adaptive_rank_pruning

    logger = logging.getLogger("welore-golden")
    dense = weights()
    tensors = {f"weight/{k}": v for k, v in dense.items()}
    results = {}
    for case, (tau, min_ratio) in CASES.items():
        model = toy(dense)
        args = SimpleNamespace(rank_thresold=tau)
        spectra = rank_analysis_weight(args, model, None, torch.device("cpu"))
        pruning = adaptive_rank_pruning(args, tau, spectra, logger)
        do_rank_reduction(args, model, None, pruning, min_ratio, logger, False)
        low = []
        for i, layer in enumerate(model.model.layers):
            for name in SHAPES:
                module = layer.get_submodule(name)
                if not isinstance(module, nn.Linear):
                    low.append(f"{i}.{name}")
                    if case == "t0.135-r0":  # every matrix is low-rank here
                        up, down = module.U.weight.float(), module.V.weight.float()
                        tensors[f"{case}/{i}.{name}/UV"] = (up @ down).detach()
        results[case] = {
            "tau": tau,
            "min_ratio": min_ratio,
            "pruned_rank": {f"{i}.{n}": int(pruning[i][n]) for i in pruning for n in pruning[i]},
            "low_rank": low,
        }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "VITA-Group/WeLore",
        "commit": COMMIT,
        "files": ["utils.py", "lib/rank_utils.py", "lib/rank_reduction.py", "lib/LowRankLayer.py"],
        "command": "python tests/golden/welore/generate.py /path/to/VITA-Group-WeLore",
        "config": {"shapes": SHAPES, "layers": LAYERS, "cases": CASES},
        "results": results,
        "notes": "UV: the product of the reference's bf16 factors U V, in fp32 (case t0.135-r0)",
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
