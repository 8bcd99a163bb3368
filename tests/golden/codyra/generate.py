"""Golden fixture for CoDyRA, from the authors' code.

Repository: Artificer-AI-Lab/CoDyRA, commit c1691e4c4c8a331acaaeb7dfa5e37bcb974cf0c8 (the
store's copy; no git snapshot of the repository could be fetched, so REF holds the
store's text of loralib/codyra.py, written out unchanged, and the rank-selection lines
of models/codyra.py's train_model transcribed verbatim into REF/train_fragment.py as
`schedule_and_prune(args, model, T, step_fn)`, since train_model itself needs open_clip,
CUDA and DataParallel; only its training step is replaced by a callback).
Files used: loralib/codyra.py (codyra_Linear: init, forward, increment_task),
models/codyra.py (train_model: lambdas, the threshold index, the three masked updates).

Command (from the peftbench repository root, REF = /tmp/cl-ref/codyra):
    /work/main/.venv/bin/python tests/golden/codyra/generate.py REF

Stored: a seeded codyra_Linear (12 -> 10, r = 4) with B set away from zero, its output on
a fixed input and the gradients of a fixed projection of it; the layer after
increment_task with one gate at zero (merged weight, the frozen factors, the output);
and three gate trajectories through the reference's schedule-and-prune lines (gates as
they stand before each iteration's prune, then the final gates).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
COMMIT = "c1691e4c4c8a331acaaeb7dfa5e37bcb974cf0c8"
# (total iterations, dense_iters, lambda_num, max_kappa): an even split, a ragged one
# (dense 11.1, a threshold step every 3 iterations) and one with no step (every = 0).
SCHEDULES = {"even": (40, 0.5, 5, 0.3), "ragged": (37, 0.3, 7, 0.2), "flat": (10, 0.5, 50, 0.1)}


def _layer(out: dict) -> None:
    from loralib import codyra_Linear  # the reference

    torch.manual_seed(0)
    layer = codyra_Linear(12, 10, r=4)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(10, 4) * 0.3)
    out |= {f"init.{k}": v.detach().clone() for k, v in layer.state_dict().items()}
    x, proj = torch.randn(3, 5, 12), torch.randn(3, 5, 10)
    y, _ = layer(x)
    (y * proj).sum().backward()
    out |= {"x": x, "proj": proj, "y": y.detach()}
    out |= {f"grad.{n}": layer.get_parameter(n).grad.clone() for n in ("lora_A", "lora_B", "gate")}
    with torch.no_grad():
        layer.gate[0, 1] = 0.0  # a rank the threshold switched off
    torch.manual_seed(1)
    layer.increment_task()
    out["after.weight"] = layer.weight.detach().clone()
    out["after.old_lora_A"] = layer.old_lora_A.detach().clone()
    out["after.old_lora_B"] = layer.old_lora_B.detach().clone()
    out["after.y"] = layer(x)[0].detach()
    out |= {
        f"after.{n}": layer.get_parameter(n).detach().clone() for n in ("lora_A", "lora_B", "gate")
    }


def _trajectory(name: str, out: dict) -> None:
    from loralib import codyra_Linear
    from train_fragment import schedule_and_prune

    total, dense, num, kappa = SCHEDULES[name]
    torch.manual_seed(2)
    model = torch.nn.ModuleList([codyra_Linear(6, 6, r=8)])
    with torch.no_grad():
        model[0].gate.copy_(torch.randn(1, 8) * 0.4)
    seen = []
    step = lambda _it: seen.append(model[0].gate.detach().clone())  # noqa: E731
    args = SimpleNamespace(max_kappa=kappa, lambda_num=num, dense_iters=dense)
    schedule_and_prune(args, model, total, step)
    seen.append(model[0].gate.detach().clone())
    out[f"traj.{name}"] = torch.cat(seen)


def main(ref: str) -> None:
    sys.path.insert(0, ref)
    out: dict[str, torch.Tensor] = {}
    _layer(out)
    for name in SCHEDULES:
        _trajectory(name, out)
    save_file({k: v.contiguous() for k, v in out.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "Artificer-AI-Lab/CoDyRA", "commit": COMMIT,
        "files": ["loralib/codyra.py", "models/codyra.py"],
        "command": "/work/main/.venv/bin/python tests/golden/codyra/generate.py REF",
        "config": {"d_in": 12, "d_out": 10, "r": 4, "zeroed_gate": 1, "boundary_seed": 1,
                   "schedules": {k: list(v) for k, v in SCHEDULES.items()}},
        "notes": "traj rows: the gate before each iteration's prune, then the final gate; "
                 "torch " + torch.__version__,
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
