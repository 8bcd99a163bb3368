"""Golden fixture for SpIEL, produced by the authors' own code.

Repository: AlanAnsell/peft (the SpIEL fork of PEFT), commit
73b455b480c5a93ec17ff0e817f946df5899b2af; the optimiser grouping follows the SpIEL
training script ducdauge/sft-llm@dbff5b83b97407e57a83cb094a8b4dbe10773b61
(finetune/finetune.py: no weight decay for names containing "bias" or
"layer_norm.weight", SftAdamW(momentum_dtype=float32) with its default eps).

Files run: src/peft/tuners/sft/{config,model,layer,trainer,optimizer}.py
(SftConfig, SftModel, SftSelector, SftAdamW).

Command (from the peftbench repository root):

    /work/main/.venv/bin/python tests/golden/spiel/generate.py /path/to/AlanAnsell-peft

Two stubs, both outside the code under test:
- `linear_sd` is the fork's C++ extension (src/peft/tuners/sft/linear-sd/linear_sd.cpp),
  which is not built here. Its two functions are re-stated below in PyTorch with the
  same arithmetic (W = W0 + scatter_add(dv at di); y = x W^T + b; dW = g^T x,
  ddv = dW.flatten()[di]); the SftModel / SftSelector / SftAdamW logic is the fork's.
- `transformers.TrainerCallback` (imported by trainer.py for the HF Trainer wrapper,
  which is not used) is set to a bare class: the fork's peft package cannot import the
  current transformers' trainer_callback (circular import through `peft`).

The setting: a 3-target toy model (a: 24->16, b: 16->40, c: 40->16, head 16->3), the
SpIEL budget at density 0.05 of ALL model parameters, and 12 training steps on a fixed
batch sequence with reselection every 4 steps, 2 accumulation steps, initial rate 0.5,
constant lr 0.01, weight decay 0.1. The fixture stores the model weights, the batches,
the reference's per-target delta counts, its initial random support, and after steps 2,
6, 10 and 12: every target's indices, values and SftAdamW state (age, exp_avg,
exp_avg_sq), plus the head.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
COMMIT = "73b455b480c5a93ec17ff0e817f946df5899b2af"
CONFIG = {
    "shapes": {"a": [16, 24], "b": [40, 16], "c": [16, 40], "head": [3, 16]},
    "density": 0.05,
    "reselection_steps": 4,
    "selection_accumulation_steps": 2,
    "initial_reselection_rate": 0.5,
    "steps": 12,
    "batch": 8,
    "lr": 0.01,
    "weight_decay": 0.1,
    "seed": 0,
    "checkpoints": [2, 6, 10, 12],
}


class Toy(nn.Module):
    """backbone (a, b, c) + head; y = head(c(tanh(b(tanh(a(x))))))."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        for name in ("a", "b", "c"):
            d_out, d_in = CONFIG["shapes"][name]
            setattr(self.backbone, name, nn.Linear(d_in, d_out))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        b = self.backbone
        return self.head(b.c(torch.tanh(b.b(torch.tanh(b.a(x))))))


def _stub_linear_sd() -> None:
    mod = types.ModuleType("linear_sd")

    def dense(weight, dv, di):
        w = weight.clone()
        w.reshape(-1).scatter_add_(0, di.long(), dv.to(w.dtype))
        return w

    def forward(input, weight, dv, di, bias):
        return F.linear(input.to(weight.dtype), dense(weight, dv, di), bias)

    def backward(og, input, weight, dv, di, in_grad, w_grad, dv_grad, b_grad, bias=None):
        w = dense(weight, dv, di)
        og2 = og.reshape(-1, og.shape[-1])
        gi = og2.mm(w.to(og2.dtype)).view_as(input) if in_grad else None
        gw = og2.t().mm(input.reshape(-1, input.shape[-1]).to(og2.dtype))
        gdv = gw.view(-1).gather(0, di.long()) if dv_grad else None
        gb = og2.sum(0) if bias is not None and b_grad else None
        return [gi, gw, gdv, None, gb]

    mod.forward, mod.backward = forward, backward
    sys.modules["linear_sd"] = mod
    import transformers

    transformers.TrainerCallback = type("TrainerCallback", (), {})


def main(ref: Path) -> None:
    sys.path.insert(0, str(ref / "src"))
    _stub_linear_sd()
    from peft.tuners.sft import SftAdamW, SftConfig, SftSelector
    from peft.tuners.sft.model import SftModel

    torch.manual_seed(CONFIG["seed"])
    toy = Toy()
    weights = {f"model.{k}": v.detach().clone() for k, v in toy.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(CONFIG["steps"], CONFIG["batch"], 24, generator=gen)
    ys = torch.randint(0, 3, (CONFIG["steps"], CONFIG["batch"]), generator=gen)

    config = SftConfig(
        density=CONFIG["density"],
        target_modules=["a", "b", "c"],
        reselection_steps=CONFIG["reselection_steps"],
        selection_accumulation_steps=CONFIG["selection_accumulation_steps"],
        initial_reselection_rate=CONFIG["initial_reselection_rate"],
    )
    sft = SftModel(toy, config, "default")
    for p in toy.head.parameters():  # the task head trains in full (modules_to_save)
        p.requires_grad_(True)
    num_deltas = dict(config.num_deltas)
    deltas = {
        n.split(".")[-1]: m.sft_delta["default"]
        for n, m in toy.backbone.named_modules()
        if hasattr(m, "sft_delta")
    }
    out = dict(weights)
    for name, delta in deltas.items():
        out[f"init.{name}.indices"] = delta.indices.clone()

    # ducdauge/sft-llm finetune.py: decay unless the name has "bias" / "layer_norm.weight".
    no_decay = ["bias", "layer_norm.weight"]
    named = [(n, p) for n, p in toy.named_parameters() if p.requires_grad]
    groups = [
        {
            "params": [p for n, p in named if not any(nd in n for nd in no_decay)],
            "weight_decay": CONFIG["weight_decay"],
        },
        {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = SftAdamW(groups, lr=CONFIG["lr"], momentum_dtype=torch.float32)
    selector = SftSelector(toy, optimizer, config, CONFIG["steps"], 1)

    for step in range(CONFIG["steps"]):
        loss = F.cross_entropy(sft(xs[step]), ys[step])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        selector.step()
        done = step + 1
        if done in CONFIG["checkpoints"]:
            for name, delta in deltas.items():
                state = optimizer.state[delta.values]
                out[f"step{done}.{name}.indices"] = delta.indices.clone()
                out[f"step{done}.{name}.values"] = delta.values.detach().clone()
                for key in ("age", "exp_avg", "exp_avg_sq"):
                    out[f"step{done}.{name}.{key}"] = state[key].clone()
            out[f"step{done}.head.weight"] = toy.head.weight.detach().clone()
            out[f"step{done}.head.bias"] = toy.head.bias.detach().clone()
    out["xs"], out["ys"] = xs, ys

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "AlanAnsell/peft (+ ducdauge/sft-llm for the optimiser groups)",
        "commit": COMMIT,
        "files": [
            "src/peft/tuners/sft/config.py",
            "src/peft/tuners/sft/model.py",
            "src/peft/tuners/sft/layer.py",
            "src/peft/tuners/sft/trainer.py",
            "src/peft/tuners/sft/optimizer.py",
            "ducdauge/sft-llm@dbff5b83b97407e57a83cb094a8b4dbe10773b61 finetune/finetune.py",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/spiel/generate.py <AlanAnsell/peft checkout>",
        "config": CONFIG,
        "total_params": int(sft.total_params),
        "num_deltas": {k.split(".")[-1]: int(v) for k, v in num_deltas.items()},
        "notes": (
            "linear_sd (the fork's C++ kernel) is stubbed with a PyTorch re-statement of "
            "its forward/backward; transformers.TrainerCallback is stubbed (unused HF "
            "Trainer wrapper). Deltas per target = int(int(total_params * density) * "
            "numel / numel of all targets) (model.py); total_params counts every model "
            "parameter, head included. The initial support is torch.rand top-k from the "
            "global RNG (layer.py random_subset), so the test loads it rather than "
            "regenerating it. SftSelector seeds a regrown entry's age with the number of "
            "accumulated samples and its moments with the mean (squared) gradient times "
            "(1 - beta^age) (trainer.py select_rigl)."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
