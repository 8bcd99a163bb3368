"""Golden fixture for composing sparse fine-tunings, produced by composable-sft's own code.

Repository: cambridgeltl/composable-sft, commit 29f7872d018555ee84fb9620ba7d69df426a7bdb.
File run: src/sft/sft.py (SFT.add_param, SFT.save and loading through its sparse
encoding, SFT.apply: diffs are added to the parameters, "abs" parameters, the fully
fine-tuned ones such as a task head, are copied when with_abs is true).

Command (from the peftbench repository root, with the project's venv):

    python tests/golden/sft-compose/generate.py /path/to/cambridgeltl-composable-sft

Nothing is stubbed. The code's torch.load predates torch's weights_only default, so the
script sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (the old default) before loading. The setting: a toy model (body.0: 6 -> 5, body.1: 5 -> 4, head 4 -> 3)
and two sparse fine-tunings of it, each with sparse diffs on body.0 and body.1 (about 20%
of the entries, overlapping where chance puts them) and its own head as an "abs"
parameter. Stored: the base parameters, each SFT's diffs and head, and the parameters
after applying SFT 1 without its abs and then SFT 2 with it (the composition
composable-sft's README describes: a language SFT, then a task SFT with its head).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
COMMIT = "29f7872d018555ee84fb9620ba7d69df426a7bdb"
SHAPES = {"body.0": (5, 6), "body.1": (4, 5), "head": (3, 4)}


def toy() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Module()
    model.body = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4))
    model.head = nn.Linear(4, 3)
    return model


def main(repo: Path) -> None:
    from safetensors.torch import save_file

    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # the code's 2022-era torch.load
    sys.path.insert(0, str(repo / "src"))
    from sft.sft import SFT

    model = toy()
    tensors = {f"base/{n}": p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    sfts = []
    for t in (1, 2):
        sft = SFT()
        for name in ("body.0.weight", "body.1.weight"):
            shape = dict(model.named_parameters())[name].shape
            diff = torch.randn(shape, generator=gen) * (torch.rand(shape, generator=gen) < 0.2)
            sft.add_param(name, diff, diff=True)
            tensors[f"sft{t}/diff/{name}"] = diff
        for name in ("head.weight", "head.bias"):
            value = torch.randn(dict(model.named_parameters())[name].shape, generator=gen)
            sft.add_param(name, value, diff=False)
            tensors[f"sft{t}/abs/{name}"] = value
        with tempfile.TemporaryDirectory() as folder:  # through the stored format
            sft.save(folder)
            sfts.append(SFT(folder))
    sfts[0].apply(model, with_abs=False)
    sfts[1].apply(model, with_abs=True)
    tensors.update({f"composed/{n}": p.detach().clone() for n, p in model.named_parameters()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "cambridgeltl/composable-sft",
        "commit": COMMIT,
        "files": ["src/sft/sft.py"],
        "command": "python tests/golden/sft-compose/generate.py /path/to/cambridgeltl-composable-sft",
        "config": {"shapes": SHAPES, "density": 0.2, "order": "sft1 (no abs), then sft2 (abs)"},
        "notes": "composed/*: the toy's parameters after both applications",
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
