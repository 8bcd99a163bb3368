"""Golden numbers for peftbench's FedSVD aggregation rule from the authors' code.

Reference: seanie12/fed-svd @ 36650e2eb7773521c90f5e7dcf80c0b492cd613e (the repository
the paper, arXiv 2505.12805, links; its first author's). Files used, run, never copied:

- fedmm/fedavg/server.py `Server.aggregate` with `--model ffa` (what the authors' scripts
  scripts/run_dp.sh and run_non_dp.sh pass): the global B plus the clients' B deltas
  weighted by their train sizes; A and every other tensor kept;
- misc/utils.py `reinit_lora` (`--recalculate-svd-period 1`, called by
  Server.on_round_complete each round): SVD of B A, A = U^T_r, B = V_r diag(S_r).

A tiny peft LoRA model (two 7 -> 5 linears `query` and `value`, r = 3, peft 0.21.2)
stands in for RoBERTa; the Server is a namespace with the attributes aggregate reads
(wandb, imported by server.py and unused here, is a stub module). Pinned: torch threads
1, seeds 0 (peft's init) and 1 (the global B and the clients' deltas), float32 as the
authors run. Command (the checkout unpacked in a scratch folder):

    git -C <mirror> archive --prefix=repo/ 36650e2 | tar x -C /tmp/fed-ref
    cd /tmp/fed-ref && /work/main/.venv/bin/python <this file> /tmp/fed-ref/repo <out dir>
"""

import contextlib
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

COMMIT = "36650e2eb7773521c90f5e7dcf80c0b492cd613e"
SIZES = [5, 3, 2]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.query = torch.nn.Linear(7, 5)
        self.value = torch.nn.Linear(7, 5)


def main(repo: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, repo)
    stub = types.ModuleType("wandb")  # imported by server.py, unused here
    stub.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    sys.modules["wandb"] = stub
    from fedmm.fedavg.server import Server
    from misc.utils import get_state_dict, reinit_lora
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(Tiny(), LoraConfig(r=3, lora_alpha=3, target_modules=["query", "value"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a global B after some rounds (not the zero init)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    orig = get_state_dict(model)
    diffs = {
        c: {k: torch.randn(v.shape, generator=g).numpy() if "lora_B" in k else np.zeros_like(v)
            for k, v in orig.items()}
        for c in range(len(SIZES))
    }  # fmt: skip
    ratio = (np.array(SIZES) / np.sum(SIZES)).tolist()
    server = types.SimpleNamespace(
        args=types.SimpleNamespace(agg_flora=False, agg_fedex=False, agg_flora_svd=False, model="ffa"),
        model=model, get_weights=lambda: {"model": orig}, logger=types.SimpleNamespace(print=print),
    )  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):
        aggr = Server.aggregate(server, diffs, ratio)
    model.load_state_dict(
        {k: torch.tensor(v) for k, v in aggr.items() if v is not None}, strict=False
    )
    reinit_lora(model)
    lora = [k for k in orig if "lora" in k]
    tensors = {f"global/{k}": torch.tensor(orig[k]) for k in lora}
    for c in diffs:
        for k in lora:
            if "lora_B" in k:
                tensors[f"client{c}/{k}"] = torch.tensor(orig[k] + diffs[c][k])
    tensors |= {f"after/{k}": model.state_dict()[k].detach().clone() for k in lora}
    _write(Path(out_dir), tensors, lora)


def _write(out: Path, tensors: dict, lora: list[str]) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "fixture.safetensors"))
    meta = {
        "repo": "seanie12/fed-svd",
        "commit": COMMIT,
        "files": ["fedmm/fedavg/server.py", "misc/utils.py"],
        "command": "cd /tmp/fed-ref && /work/main/.venv/bin/python "
        "tests/golden/fedsvd/generate.py /tmp/fed-ref/repo tests/golden/fedsvd",
        "config": {"sizes": SIZES, "r": 3, "d_in": 7, "d_out": 5, "names": lora,
                   "seeds": {"init": 0, "tensors": 1}, "threads": 1, "dtype": "float32"},
        "notes": "The clients send B only (A frozen, FFA); the server's B is the global B "
        "plus the size-weighted mean of the clients' deltas, then reinit_lora re-factorises "
        "B A. The SVD's free signs (one per singular pair) are aligned before comparing.",
    }  # fmt: skip
    (out / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
