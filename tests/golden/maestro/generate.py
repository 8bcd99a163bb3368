"""Golden fixture for Maestro, from the authors' code.

Repository: SamuelHorvath/Maestro-LoD, commit 0003014 (the public release).
Files used: maestro/layers/linear.py (MaestroLinear, decompose_linear: SVD init with
sqrt(S) on both factors; forward at a share p of the inner width; _compute_lasso /
group_lasso / importance with hierarchical=True; assign_low_rank), maestro/layers/utils.py
(group_lasso_criterion, progressive_shrinking), maestro/samplers/independent.py
(IndependentSampler: np.random.randint(1, width + 1) / width per layer, in module order),
cifar_mnist_main.py (train: loss = CE + gp_lambda * group lasso, hierarchical=True;
progressive shrinking after each epoch; read, not run).

Command (from the peftbench repository root, reference extracted to REF, e.g.
`git -C <mirror> archive HEAD | tar -x -C /tmp/maestro-ref`):
    /work/main/.venv/bin/python tests/golden/maestro/generate.py REF

Stored: two seeded linears (24 -> 12, 10 -> 16), the reference's decomposed factors, a
two-layer model's output at full width and at fixed shares, the gradients of (output
sum + 0.1 x hierarchical group lasso) at those shares, the hierarchical importances, the
keep masks and outputs after assign_low_rank at a threshold, and 12 sampler draws for
numpy seed 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
# The extracted archive has no .git; this is the mirror's HEAD.
MIRROR_COMMIT = "0003014a94f78a63e48d971b773b40b00277a207"
SHARES = (0.25, 0.5)  # p for layer 0 and layer 1 in the sampled pass


def _model(layers, x, shares):
    h = F.relu(layers[0](x, shares[0]))
    return layers[1](h, shares[1])


def main(ref: str) -> None:
    sys.path.insert(0, ref)
    from maestro.layers.linear import decompose_linear  # the reference
    from maestro.layers.utils import group_lasso_criterion, progressive_shrinking
    from maestro.samplers.independent import IndependentSampler

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(24, 12), torch.nn.ReLU(), torch.nn.Linear(12, 16))
    layers = [decompose_linear(base[0]), decompose_linear(base[2])]
    model = torch.nn.ModuleList(layers)
    x = torch.randn(5, 24)
    out = {f"base.{k}": v.clone() for k, v in base.state_dict().items()}
    out |= {f"maestro.{k}": v.clone() for k, v in model.state_dict().items()}
    out["x"], out["y_full"] = x, _model(layers, x, (None, None)).detach()
    out["y_sampled"] = _model(layers, x, SHARES).detach()
    loss = _model(layers, x, SHARES).sum() + 0.1 * group_lasso_criterion(model, hierarchical=True)
    loss.backward()
    out |= {f"grad.{k}": v.grad.clone() for k, v in model.named_parameters()}
    out["group_lasso"] = group_lasso_criterion(model, hierarchical=True).detach().reshape(1)
    for i, m in enumerate(layers):
        out[f"importance.{i}"] = m.importance(hierarchical=True).clone()
    threshold = float(out["importance.0"].median())
    progressive_shrinking(model, threshold, hierarchical=True)
    for i, m in enumerate(layers):
        out[f"keep.{i}"] = m.low_rank.to(torch.int64)
    out["y_shrunk"] = _model(layers, x, (None, None)).detach()
    out["y_shrunk_sampled"] = _model(layers, x, SHARES).detach()
    np.random.seed(3)
    sampler = IndependentSampler(model)
    out["draws"] = torch.tensor([sampler() for _ in range(12)], dtype=torch.float64)
    commit = subprocess.run(["git", "-C", ref, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or MIRROR_COMMIT  # fmt: skip
    save_file({k: v.contiguous() for k, v in out.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "SamuelHorvath/Maestro-LoD", "commit": commit,
        "files": ["maestro/layers/linear.py", "maestro/layers/utils.py",
                  "maestro/samplers/independent.py", "cifar_mnist_main.py"],
        "command": "/work/main/.venv/bin/python tests/golden/maestro/generate.py REF",
        "config": {"shapes": [[12, 24], [16, 12]], "shares": list(SHARES), "lasso_weight": 0.1,
                   "threshold": threshold, "sampler_seed": 3, "widths_at_draw": [
                       int(m.inner_dim) for m in layers]},
        "notes": "shrinking keeps importance >= the median of layer 0's importances; the "
                 "sampler is built after shrinking, so its widths are the kept counts",
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
