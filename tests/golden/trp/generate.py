"""Golden fixture for Trained Rank Pruning (TRP), from the authors' code.

Repository: yuhuixu1993/Trained-Rank-Pruning, commit 8cc7470 (the public release).
Files used: decompose.py (EnergyThreshold, ValueThreshold, channel_decompose: imported and
run), cifar-TRP.py (low_rank_approx: its source is taken from the file with `ast` and run
as written (the text of the function alone), since importing the script parses the command line and needs CUDA and
CIFAR-10; train(): read, and its step order replayed below: low_rank_approx before the
forward every `period` batches, the nuclear subgradient added to .grad after backward on
the same batches, then SGD).

Command (from the peftbench repository root, reference extracted to REF, e.g.
`git -C <mirror> archive HEAD | tar -x -C /tmp/systems-trp/ref`):
    /work/main/.venv/bin/python tests/golden/trp/generate.py REF

The decomposition type is 'NC' (the README's TRP example): a conv weight viewed as
N x CHW, which for a 1 x 1 conv is exactly a linear layer's d_out x d_in weight; so the
fixture's layers are bias-free 1 x 1 convs (24 -> 12, 12 -> 16). decompose.py imports
torchvision without using it; a stub stands in (torchvision is not installed here), and
channel_decompose ends with `.cuda()`, made the identity on this CPU machine.

Stored: the initial weights, the batches, the weights, energy-threshold ranks and
subgradients of the first low_rank_approx, the weights and losses after every one of
STEPS SGD steps at period PERIOD, and channel_decompose's factors (C: r x d_in,
N: d_out x r) at a value threshold, with the kept ranks.
"""

from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
COMMIT = "8cc7470ab96cfd7f9be08e636c281583039f51b6"  # the mirror's HEAD
STEPS, PERIOD, NUCLEAR, ENERGY = 5, 2, 3e-2, 0.9
SGD = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}  # cifar-TRP.py's defaults
LUT = ["0", "2"]  # the look-up table: both convs


def reference(ref: str):
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))  # unused import
    sys.path.insert(0, ref)
    import decompose

    # The whole script does not parse on Python >= 3.7 (`.cuda(async=True)` in train()),
    # so the function's own text, from its `def` to the next top-level `def`, is parsed.
    source = (Path(ref) / "cifar-TRP.py").read_text()
    start = source.index("def low_rank_approx(")
    text = source[start : source.index("\ndef ", start)]
    space = {"torch": torch}
    exec(compile(ast.parse(text), "cifar-TRP.py:low_rank_approx", "exec"), space)
    return decompose, space["low_rank_approx"]


def main(ref: str) -> None:
    decompose, low_rank_approx = reference(ref)
    torch.nn.Module.cuda = lambda self, *a, **k: self  # channel_decompose's final .cuda()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(24, 12, 1, bias=False),
        torch.nn.ReLU(),
        torch.nn.Conv2d(12, 16, 1, bias=False),
    )
    out = {f"init.{k}": v.clone() for k, v in model.state_dict().items()}
    xs, ys = torch.randn(STEPS, 6, 24), torch.randint(0, 16, (STEPS, 6))
    out["x"], out["y"] = xs, ys
    opt = torch.optim.SGD(model.parameters(), **SGD)
    ranks = []
    for step in range(STEPS):  # cifar-TRP.py train(), one batch per step
        if step % PERIOD == 0:
            ranks.append([energy_rank(decompose, model, n) for n in LUT])
            model, sub = low_rank_approx(model, LUT, decompose.EnergyThreshold(ENERGY), True, "NC")
            if step == 0:
                out |= {f"approx.{k}": v.clone() for k, v in model.state_dict().items()}
                out |= {f"sub.{n}": sub[n].clone() for n in LUT}
        logits = model(xs[step][:, :, None, None]).flatten(1)
        loss = torch.nn.functional.cross_entropy(logits, ys[step])
        opt.zero_grad()
        loss.backward()
        if step % PERIOD == 0:
            for name, m in model.named_modules():
                if name in LUT:
                    m.weight.grad.data.add_(NUCLEAR * sub[name])
        opt.step()
        out |= {f"step{step}.{k}": v.clone() for k, v in model.state_dict().items()}
        out[f"loss{step}"] = loss.detach().reshape(1)
    sigma = torch.linalg.svdvals(model[0].weight.detach().flatten(1))
    threshold = float(sigma[3:5].mean())  # between layer 0's 4th and 5th singular values
    for n in LUT:
        out[f"sigma.{n}"] = torch.linalg.svdvals(model.get_submodule(n).weight.detach().flatten(1))
    final = decompose.channel_decompose(
        model, LUT, decompose.ValueThreshold(threshold), train=False
    )
    kept = []
    for n in LUT:
        m = final.get_submodule(n)
        out[f"final.{n}.C"], out[f"final.{n}.N"] = m.C.weight.flatten(1), m.N.weight.flatten(1)
        kept.append(int(m.C.weight.shape[0]))
    save_file({k: v.contiguous() for k, v in out.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "yuhuixu1993/Trained-Rank-Pruning", "commit": COMMIT,
        "files": ["decompose.py", "cifar-TRP.py"],
        "command": "/work/main/.venv/bin/python tests/golden/trp/generate.py REF",
        "config": {"shapes": [[12, 24], [16, 12]], "steps": STEPS, "period": PERIOD,
                   "nuclear_weight": NUCLEAR, "energy": ENERGY, "sgd": SGD, "type": "NC",
                   "energy_ranks": ranks, "value_threshold": threshold, "final_ranks": kept},
        "notes": "energy_ranks: the ranks EnergyThreshold kept at each low_rank_approx "
                 "(steps 0, 2, 4); the value threshold lies between layer 0's 4th and 5th "
                 "singular values after the last step",
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


def energy_rank(decompose, model, name: str) -> int:
    """The rank low_rank_approx is about to keep (its criterion on torch.svd's sigmas)."""
    w = model.get_submodule(name).weight.detach().flatten(1)
    return decompose.EnergyThreshold(ENERGY)(torch.svd(w, some=True)[1])


if __name__ == "__main__":
    main(sys.argv[1])
