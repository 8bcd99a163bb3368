"""Golden fixture for Little by Little (MoRAM), from the authors' code.

Repository: Artificer-AI-Lab/MoRAM, commit aaa51d8ec67171e1bc5e1a1168351588561256c4 (the
store's snapshot; XTAIL/loralib/moram.py last changed at 05c3d61).
Files used: XTAIL/loralib/moram.py (MoRAM_Linear: init, forward in training and in
evaluation, increment_task). Its increment_task moves tensors with `.cuda()`; on this
CPU-only machine the script makes `Tensor.cuda` the identity before calling it.

Command (from the peftbench repository root, the reference extracted to REF, e.g.
`git -C <mirror> archive HEAD XTAIL/loralib | tar -x -C /tmp/cl-ref/moram`):
    /work/main/.venv/bin/python tests/golden/moram/generate.py REF/XTAIL

Stored: a seeded MoRAM_Linear (12 -> 10, r = 4, topk 3, temp 0.05, threshold 0.3) with B
set away from zero; its output in training and in evaluation mode on a fixed input and
the gradients of a fixed projection of the training output; then, twice, the layer after
increment_task (fresh factors drawn under a fixed seed, the new B set away from zero):
its fresh A, its outputs in both modes, and after the second boundary the frozen pool
and the gradients.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
COMMIT = "aaa51d8ec67171e1bc5e1a1168351588561256c4"
CONFIG = {"d_in": 12, "d_out": 10, "r": 4, "topk": 3, "temp": 0.05, "threshold": 0.3,
          "boundary_seeds": [1, 3], "b_seeds": [2, 4]}  # fmt: skip


def _outputs(layer, x, proj, out: dict, tag: str) -> None:
    layer.train()
    layer.zero_grad(set_to_none=True)
    y, _ = layer(x)
    (y * proj).sum().backward()
    out[f"{tag}.y_train"] = y.detach()
    out[f"{tag}.grad.lora_A"] = layer.lora_A.grad.clone()
    out[f"{tag}.grad.lora_B"] = layer.lora_B.grad.clone()
    layer.eval()
    with torch.no_grad():
        out[f"{tag}.y_eval"] = layer(x)[0]


def main(ref: str) -> None:
    sys.path.insert(0, ref)
    from loralib.moram import MoRAM_Linear  # the reference

    torch.Tensor.cuda = lambda self, *a, **k: self  # CPU only: increment_task calls .cuda()
    c = CONFIG
    torch.manual_seed(0)
    layer = MoRAM_Linear(c["d_in"], c["d_out"], r=c["r"], temp=c["temp"],
                         lora_threshold=c["threshold"], topk=c["topk"])  # fmt: skip
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(c["d_out"], c["r"]) * 0.3)
    out = {f"init.{k}": v.detach().clone() for k, v in layer.state_dict().items()}
    out["x"], out["proj"] = torch.randn(3, 5, c["d_in"]), torch.randn(3, 5, c["d_out"])
    _outputs(layer, out["x"], out["proj"], out, "task0")
    for i, (seed, b_seed) in enumerate(zip(c["boundary_seeds"], c["b_seeds"], strict=True)):
        torch.manual_seed(seed)
        layer.increment_task()
        out[f"task{i + 1}.lora_A"] = layer.lora_A.detach().clone()
        torch.manual_seed(b_seed)
        with torch.no_grad():
            layer.lora_B.copy_(torch.randn(c["d_out"], c["r"]) * 0.3)
        out[f"task{i + 1}.lora_B"] = layer.lora_B.detach().clone()
        _outputs(layer, out["x"], out["proj"], out, f"task{i + 1}")
    out["pool.A"] = layer.old_lora_A.detach().clone()
    out["pool.B"] = layer.old_lora_B.detach().clone()
    assert layer.old_lora_A.grad is None and layer.old_lora_B.grad is None
    save_file({k: v.contiguous() for k, v in out.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "Artificer-AI-Lab/MoRAM", "commit": COMMIT,
        "files": ["XTAIL/loralib/moram.py"],
        "command": "/work/main/.venv/bin/python tests/golden/moram/generate.py REF/XTAIL",
        "config": c,
        "notes": "taskN: after N increment_task calls; torch " + torch.__version__,
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
