"""Golden fixture for AutoLoRA's gated fusion rule, from the authors' code.

Repository: lzws/AutoLoRA, commit cf7491f (the public release; its README carries the
paper's title, "AutoLoRA: Automatic LoRA Retrieval and Fine-Grained Gated Fusion for
Text-to-Image Generation"). Files used: train_merger.py (LoraMergerNobase, the
'no_base' merger its launch command and test scripts name, and LoraMergerNoCross; their
source is taken from the file's text and run as written, since importing the script
needs DiffSynth's FLUX weights, lightning and two modules the repository does not ship,
merger.py and utils.py), diffsynth/vram_management/layers.py (AutoLoRALinear: read; it
stacks each LoRA's x A^T B^T alpha and hands (base output, stack) to the patcher).

Command (from the peftbench repository root, reference extracted to REF, e.g.
`git -C <mirror> archive HEAD train_merger.py | tar -x -C /tmp/systems-autolora/ref`):
    /work/main/.venv/bin/python tests/golden/autolora/generate.py REF

Stored: each merger's parameters after torch.manual_seed(0) construction (w = 0.512),
a base output (2 x 3 x DIM) and three LoRA outputs (3 x 2 x 3 x DIM), the fused output,
and the gradients of (fused output * a fixed probe).sum() with respect to every merger
parameter and to the LoRA outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
COMMIT = "cf7491f0357130a62490ac64e8f307b9b0ce94f1"  # the mirror's HEAD
DIM, W = 8, 0.512
CLASSES = {"no_base": "LoraMergerNobase", "no_cross": "LoraMergerNoCross"}


def reference(ref: str) -> dict:
    """The merger classes, from train_merger.py's own text (its imports cannot run here)."""
    source = (Path(ref) / "train_merger.py").read_text()
    start = source.index("class LoraMergerNoCross(")
    text = source[start : source.index("\nmerger_class", start)]
    space = {"torch": torch}
    exec(compile(text, "train_merger.py:mergers", "exec"), space)
    return space


def main(ref: str) -> None:
    space, out = reference(ref), {}
    torch.manual_seed(1)
    base = torch.randn(2, 3, DIM)
    loras = torch.randn(3, 2, 3, DIM) * 0.3
    probe = torch.randn(2, 3, DIM)
    out |= {"base": base, "loras": loras, "probe": probe}
    for kind, cls in CLASSES.items():
        torch.manual_seed(0)
        merger = space[cls](DIM, W)
        out |= {f"{kind}.param.{k}": v.detach().clone() for k, v in merger.named_parameters()}
        lo = loras.clone().requires_grad_(True)
        fused = merger(base, lo)
        out[f"{kind}.fused"] = fused.detach().clone()
        (fused * probe).sum().backward()
        grads = {k: v.grad for k, v in merger.named_parameters() if v.grad is not None}
        out |= {
            f"{kind}.grad.{k}": v.clone() for k, v in grads.items()
        }  # norm_base: unused by no_cross
        out[f"{kind}.grad.loras"] = lo.grad.clone()
    save_file({k: v.contiguous() for k, v in out.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "lzws/AutoLoRA", "commit": COMMIT,
        "files": ["train_merger.py", "diffsynth/vram_management/layers.py"],
        "command": "/work/main/.venv/bin/python tests/golden/autolora/generate.py REF",
        "config": {"dim": DIM, "w": W, "kinds": CLASSES, "num_loras": 3, "seed": 0},
        "notes": "train_merger.py imports LoraPatcher5 from merger.py and "
                 "LoRA_State_dicts_Decomposition from utils.py; neither file is in the "
                 "repository, so the merger its training actually used is not readable; "
                 "these are the merger classes the script itself defines",
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
