"""Golden fixture for PELA, from the authors' code.

Repository: guoyang9/PELA, commit e0d3e1f7ca216a9712594d406baeaeaead396566.
Files used: ALBEF/models/low_rank.py (low_rank_approximate, ModuleLowRank: the rank
rule d_in d_out // (ratio (d_in + d_out)), numpy's full SVD of W^T with the singular
values split evenly, the replacement nn.Sequential(first, second) keeping W's bias),
ALBEF/models/model_pretrain.py (inf_norm: the mean over replaced layers of
mse(||W2 W1 - W||_inf, eps), eps 1e-3), ALBEF/Pretrain.py (loss = task + 0.1 kd +
loss_norm, kd the mean of per-feature MSEs; read, not run: it needs the ALBEF data).

low_rank.py is imported from the checkout; inf_norm is taken from model_pretrain.py's
source by name (ast) and run as it is, because that module's imports (ALBEF's BERT,
timm's ViT) are not needed for it.

Command (from the peftbench repository root, reference checked out at REF):
    /work/main/.venv/bin/python tests/golden/pela/generate.py REF

Stored: a two-layer MLP teacher (24 -> 40 -> 16, seeded), the low-rank student the
reference builds from it with compress_ratio 3 (is_approximate=True), its output on a
fixed input, and inf_norm(teacher, student) before and after a fixed perturbation of
the student's factors.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def _inf_norm(ref: str):
    source = Path(ref, "ALBEF/models/model_pretrain.py").read_text()
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "inf_norm")
    scope = {"torch": torch, "F": F}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "model_pretrain.py", "exec"), scope)
    return scope["inf_norm"]


def main(ref: str) -> None:
    sys.path.insert(0, f"{ref}/ALBEF")
    from models import low_rank  # the reference

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.ReLU(), torch.nn.Linear(40, 16))
    student = low_rank.ModuleLowRank(compress_ratio=3, is_approximate=True)(teacher)
    inf_norm = _inf_norm(ref)
    x = torch.randn(5, 24)
    out = {f"teacher.{k}": v for k, v in teacher.state_dict().items()}
    out |= {f"student.{k}": v.clone() for k, v in student.state_dict().items()}
    out["x"], out["y"] = x, student(x).detach()
    norms = {"inf_norm": float(inf_norm(teacher, student))}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.01 * torch.sin(torch.arange(p.numel(), dtype=torch.float32)).view_as(p))
    out |= {f"perturbed.{k}": v for k, v in student.state_dict().items()}
    norms["inf_norm_perturbed"] = float(inf_norm(teacher, student))
    commit = subprocess.run(["git", "-C", ref, "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    save_file({k: v.clone().contiguous() for k, v in out.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "guoyang9/PELA", "commit": commit,
        "files": ["ALBEF/models/low_rank.py", "ALBEF/models/model_pretrain.py"],
        "command": "/work/main/.venv/bin/python tests/golden/pela/generate.py REF",
        "config": {"shapes": [[40, 24], [16, 40]], "compress_ratio": 3, "eps": 1e-3},
        "results": norms,
        "notes": "ranks: 24*40 // (3*64) = 5 and 40*16 // (3*56) = 3",
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
