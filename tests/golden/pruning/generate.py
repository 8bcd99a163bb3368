"""Golden fixtures for DSnoT, Wanda and magnitude pruning, produced by the DSnoT authors' code.

Repository: zyxxmu/DSnoT, commit 4c029dfa66cae3dba7f4a77c78a524e272fc638c. Files run:
lib/prune.py (prune_DSnoT, prune_wanda, prune_magnitude, prepare_calibration_input,
return_reorder_indice) and lib/layerwrapper.py (WrappedGPT, the calibration statistics).
The repository's Wanda and magnitude baselines are the ones DSnoT compares with.

Command (from the peftbench repository root, with the project's venv):

    python tests/golden/pruning/generate.py /path/to/zyxxmu-DSnoT

What is stubbed, and why: the calibration loader `get_loaders` (it downloads C4) returns
fixed random token sequences; the model is a toy two-block decoder with the attribute
layout the code walks (`model.model.layers`, sublayers `self_attn.q_proj`,
`self_attn.o_proj`, `mlp.up_proj`, `mlp.down_proj`, `config.use_cache`, `seqlen`,
`hf_device_map`); `Tensor.cuda` is the identity (prune_magnitude moves its sort to CUDA).
Everything the pruning functions compute is theirs. `WrappedGPT.add_batch` is wrapped to
record the inputs each sublayer saw (the first block's come from the embedding, the
second's from the first block after pruning), so a test can feed the same activations.

Cases (args as main.py's argparse defaults unless named): DSnoT unstructured 50% (skip
mlp, same-sign off: the defaults), with no_skip, with no_skip and the same-sign check on,
at 60% with no_skip; DSnoT 2:4 (skip mlp, and no_skip); Wanda 50% and 2:4; magnitude
50% and 2:4. Stored per case and sublayer: the dense weight, the recorded inputs, the
reference's statistics (scaler_row, sum_metric_row, var) and the final mask (bit-packed,
numpy.packbits of the flattened mask, 1 = zeroed); once: the toy's embedding table, the
token ids and the dense weights (fp16-exact values, stored as fp16), and the channel sums
of the first block's recorded inputs (the test recomputes the inputs from these).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
COMMIT = "4c029dfa66cae3dba7f4a77c78a524e272fc638c"
CONFIG = {"hidden": 64, "mlp": 128, "blocks": 2, "nsamples": 6, "seqlen": 10, "vocab": 50}
DEFAULTS = {
    "nsamples": CONFIG["nsamples"], "seed": 0, "sparsity_ratio": 0.5, "initial_method": "wanda",
    "max_cycle_time": 50, "without_DSnoT": False, "update_threshold": 0.1,
    "pow_of_var_regrowing": 1.0, "pow_of_var_pruning": 1.0, "skip_layer": "mlp",
    "skip_sub_layer": "no_skip", "without_same_sign": True, "get_time_overhead": False,
}  # fmt: skip
CASES = {
    "dsnot": ("DSnoT", 0, 0, {}),
    "dsnot-noskip": ("DSnoT", 0, 0, {"skip_layer": "no_skip"}),
    "dsnot-noskip-samesign": ("DSnoT", 0, 0, {"skip_layer": "no_skip", "without_same_sign": False}),
    "dsnot-60-noskip": ("DSnoT", 0, 0, {"skip_layer": "no_skip", "sparsity_ratio": 0.6}),
    "dsnot-24": ("DSnoT", 2, 4, {}),
    "dsnot-24-noskip": ("DSnoT", 2, 4, {"skip_layer": "no_skip"}),
    "wanda": ("wanda", 0, 0, {}),
    "wanda-24": ("wanda", 2, 4, {}),
    "magnitude": ("magnitude", 0, 0, {}),
    "magnitude-24": ("magnitude", 2, 4, {}),
}
SUBLAYERS = ("self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")


class Block(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, d, bias=False)
        self.self_attn.o_proj = nn.Linear(d, d, bias=False)
        self.mlp = nn.Module()
        self.mlp.up_proj = nn.Linear(d, h, bias=False)
        self.mlp.down_proj = nn.Linear(h, d, bias=False)

    def forward(self, x, attention_mask=None, position_ids=None):
        h = x + self.self_attn.o_proj(torch.tanh(self.self_attn.q_proj(x)))
        return (h + self.mlp.down_proj(torch.relu(self.mlp.up_proj(h))),)


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        d, h = CONFIG["hidden"], CONFIG["mlp"]
        gen = torch.Generator().manual_seed(0)
        self.embed = nn.Embedding(CONFIG["vocab"], d)
        scale = torch.linspace(0.3, 2.0, d)
        with torch.no_grad():
            table = (torch.randn(CONFIG["vocab"], d, generator=gen) + 0.4) * scale
            self.embed.weight.copy_(table.half().float())
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([Block(d, h) for _ in range(CONFIG["blocks"])])
        with torch.no_grad():
            for layer in self.model.layers:
                for name in SUBLAYERS:
                    lin = layer.get_submodule(name)
                    # fp16-exact values, so the fixture can store them as fp16 losslessly
                    w = torch.randn(lin.weight.shape, generator=gen) * 0.05
                    lin.weight.copy_(w.half().float())
        self.config = SimpleNamespace(use_cache=False, hidden_size=d)
        self.seqlen = CONFIG["seqlen"]
        self.hf_device_map = {}

    def forward(self, ids):
        x = self.embed(ids)
        for i in range(len(self.model.layers)):
            x = self.model.layers[i](x, attention_mask=None, position_ids=None)[0]
        return x


def tokens() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(0, CONFIG["vocab"], (CONFIG["nsamples"], CONFIG["seqlen"]), generator=gen)


def run_case(prune_lib, layerwrapper, case: str) -> dict[str, torch.Tensor]:
    method, prune_n, prune_m, overrides = CASES[case]
    model = Toy()
    names = {
        id(layer.get_submodule(s)): f"{i}.{s}" for i, layer in enumerate(model.model.layers)
        for s in SUBLAYERS
    }  # fmt: skip
    dense = {f"{i}.{s}": layer.get_submodule(s).weight.detach().clone()
             for i, layer in enumerate(model.model.layers) for s in SUBLAYERS}  # fmt: skip
    seen: dict[str, list[torch.Tensor]] = {}
    stats: dict[str, layerwrapper.WrappedGPT] = {}
    original = layerwrapper.WrappedGPT.add_batch

    def recording(self, inp, out):
        key = names[id(self.layer)]
        seen.setdefault(key, []).append(inp.detach().clone())
        stats[key] = self
        return original(self, inp, out)

    ids = tokens()
    prune_lib.get_loaders = lambda *a, **k: (
        [(ids[i : i + 1], None) for i in range(len(ids))],
        None,
    )
    layerwrapper.WrappedGPT.add_batch = recording
    try:
        args = SimpleNamespace(**{**DEFAULTS, **overrides})
        fn = {"DSnoT": prune_lib.prune_DSnoT, "wanda": prune_lib.prune_wanda,
              "magnitude": prune_lib.prune_magnitude}[method]  # fmt: skip
        with torch.no_grad():
            fn(args, model, None, torch.device("cpu"), prune_n=prune_n, prune_m=prune_m)
    finally:
        layerwrapper.WrappedGPT.add_batch = original
    out = {}
    for i, layer in enumerate(model.model.layers):
        for s in SUBLAYERS:
            key = f"{i}.{s}"
            pruned = (layer.get_submodule(s).weight == 0).reshape(-1).numpy()
            out[f"{case}/{key}/mask_bits"] = torch.from_numpy(np.packbits(pruned))
            if key in seen:
                out[f"{case}/{key}/scaler_row"] = stats[key].scaler_row.clone()
                out[f"{case}/{key}/sum_metric_row"] = stats[key].sum_metric_row.clone()
                out[f"{case}/{key}/var"] = stats[key].var.reshape(-1).clone()
            if case == "dsnot":  # the dense weights and the first block's inputs, once
                out[f"dense/{key}/weight"] = dense[key].half()
                if i == 0:  # a check on the harness: the test recomputes these
                    out[f"dense/{key}/inputs_sum"] = torch.cat(seen[key], dim=0).sum(dim=(0, 1))
    return out


def main(repo: Path) -> None:
    from safetensors.torch import save_file

    sys.path.insert(0, str(repo))
    torch.Tensor.cuda = lambda self, *a, **k: self  # prune_magnitude sorts on CUDA
    from lib import layerwrapper
    from lib import prune as prune_lib

    tensors = {"embed": Toy().embed.weight.detach().half(), "tokens": tokens()}
    for case in CASES:
        tensors.update(run_case(prune_lib, layerwrapper, case))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "zyxxmu/DSnoT",
        "commit": COMMIT,
        "files": ["lib/prune.py", "lib/layerwrapper.py", "main.py (argparse defaults)"],
        "command": "python tests/golden/pruning/generate.py /path/to/zyxxmu-DSnoT",
        "config": {
            **CONFIG,
            "defaults": DEFAULTS,
            "cases": {
                k: {"method": v[0], "prune_n": v[1], "prune_m": v[2], "overrides": v[3]}
                for k, v in CASES.items()
            },
            "sublayers": list(SUBLAYERS),
        },  # fmt: skip
        "notes": "mask_bits: numpy.packbits of the flattened mask, 1 where the reference "
        "zeroed the weight; dense/*/inputs_sum: the channel sums of every input a first-block "
        "sublayer saw in the reference's statistics pass",
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
