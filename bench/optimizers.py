"""The optimiser methods (GaLore, DCT-AdamW, FRUGAL) against AdamW on one model.

Every weight trains in every row; only the optimiser differs. Each method runs in its
own subprocess (a fresh model from the same seed, the training driver, `--steps` steps
of batch 16 x 128 random tokens) and reports:

- optimiser-state bytes (suite/train/measure.py: every tensor in optimizer.state plus
  what the optimiser keeps elsewhere, e.g. DCT bases, FRUGAL's chosen coordinates), for
  the whole model and per projected matrix (that matrix's own state: moments, GaLore's
  projection, DCT's indices), against AdamW's for the same tensors;
- the median step time after the first two steps, and the first step's time (the one
  that computes GaLore's SVD projections or FRUGAL's first selection);
- peak memory: the resident high-water mark (VmHWM, reset through /proc/self/clear_refs
  once the model is built), or max_memory_allocated on CUDA.

Bounds checked per projected m x n matrix, d = min(m, n): GaLore's moments are r/d of
AdamW's (its projection adds r x d more: r/d + r / (2 max(m, n)) in all); FRUGAL's
moments (columns) are at most rho of AdamW's.

    .venv/bin/python bench/optimizers.py [--model minilm-l6 | llama-config] [--steps 8]
        [--rank 8] [--density 0.25] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH, LENGTH, VOCAB = 16, 128, 30522
# A LLaMA-style model built from a config (random weights; about 25M parameters).
LLAMA = {"model_type": "llama", "vocab_size": VOCAB, "hidden_size": 384,
         "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 6,
         "num_key_value_heads": 6, "max_position_embeddings": 256,
         "tie_word_embeddings": False}  # fmt: skip
METHODS = ["adamw", "galore", "dct-adamw", "frugal", "frugal-block"]


def method_entry(name: str, rank: int, density: float):
    from suite.specs.matrix import MethodEntry

    if name == "adamw":
        return MethodEntry(method="full")
    if name in ("galore", "dct-adamw"):
        return MethodEntry(method=name, params={"rank": rank})
    projection = "block" if name == "frugal-block" else "columns"
    return MethodEntry(method="frugal", params={"density": density, "projection": projection})


def build(model_name: str, name: str, rank: int, density: float, device):
    """The task model prepared by the method, and the training driver over it."""
    from suite import conformance as C
    from suite.cells import resolve_method
    from suite.conformance_bench import bench_from_backbone
    from suite.methods.api import PrepareContext
    from suite.registry import Catalog
    from suite.train.loop import LoopConfig, TrainingDriver
    from suite.train.prepare import prepare_model

    roots = [
        REPO / "suite",
        *(REPO / "methods" / m for m in ("full", "galore", "dct-adamw", "frugal")),
    ]
    catalog = Catalog.discover(roots, builtin=False)
    preset = catalog.models.get("minilm-l6" if model_name == "minilm-l6" else "tiny-llama").spec
    torch.manual_seed(0)
    if model_name == "minilm-l6":
        from suite.models.loading import load_backbone

        backbone = load_backbone(preset)
    else:
        from transformers import AutoConfig, AutoModel

        backbone = AutoModel.from_config(AutoConfig.for_model(**LLAMA))
    model = bench_from_backbone(backbone, preset, vocab=VOCAB).build(0)
    spec = C.instantiate(resolve_method(catalog, method_entry(name, rank, density)))
    prepared = prepare_model(spec, model, PrepareContext(preset, 0, device)).prepared
    prepared.model.to(device).train()
    return prepared, TrainingDriver(prepared, LoopConfig(steps=10**6, lr=1e-4))


def batch(device) -> dict:
    gen = torch.Generator().manual_seed(0)
    data = {
        "input_ids": torch.randint(1000, 30000, (BATCH, LENGTH), generator=gen),
        "attention_mask": torch.ones(BATCH, LENGTH, dtype=torch.long),
        "labels": torch.randint(0, 3, (BATCH,), generator=gen),
    }
    return {k: v.to(device) for k, v in data.items()}


def per_matrix(driver, model) -> list[dict]:
    """Each projected matrix's own state bytes beside AdamW's for it (2 moments + step)."""
    opt = driver.optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    masters = {id(m): names[id(p)] for p, m in driver.masters.pairs.values()}
    rows = []
    for group in opt.param_groups:
        if "rank" not in group and not group.get("frugal"):
            continue
        for p in group["params"]:
            state = [t for t in opt.state[p].values() if torch.is_tensor(t)]
            moments = [
                opt.state[p][k] for k in ("exp_avg", "exp_avg_sq", "m", "v") if k in opt.state[p]
            ]
            rows.append({
                "name": names.get(id(p), masters.get(id(p), "?")),
                "shape": list(p.shape),
                "state": sum(t.numel() * t.element_size() for t in state),
                "moments": sum(t.numel() * t.element_size() for t in moments),
                "adamw": 2 * p.numel() * p.element_size() + 4,
                "adamw_moments": 2 * p.numel() * p.element_size(),
            })  # fmt: skip
    return rows


def child(model_name: str, name: str, steps: int, rank: int, density: float, device) -> None:
    """Run in a subprocess: train `steps` steps, print one JSON line of measurements."""
    from suite.train.measure import PeakMemory, optimizer_state_bytes

    prepared, driver = build(model_name, name, rank, density, device)
    data, model = batch(device), prepared.model
    meter = PeakMemory(device)
    meter.reset()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(**data).float(), data["labels"])
        model.zero_grad(set_to_none=True)
        loss.backward()
        driver.optimizer_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "state": optimizer_state_bytes(driver.optimizer),
        "matrices": per_matrix(driver, model),
        "params": sum(p.numel() for p in model.parameters()),
        "first_step": times[0],
        "step": statistics.median(times[2:] or times),
        "peak": meter.peak_bytes(),
        "isolated": meter.isolated,
    }))  # fmt: skip


def measure(args, name: str) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--model", args.model]
    cmd += ["--steps", str(args.steps), "--rank", str(args.rank), "--density", str(args.density)]
    cmd += ["--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["isolated"]:
        print(f"warning: {name}: peak memory not isolated", file=sys.stderr)
    return result


def bounds(name: str, rows: list[dict], rank: int, density: float) -> str:
    """The per-matrix check (worst moments ratio against its bound, and with the
    method's own per-matrix extras), and the projected matrices' moments in all."""
    if not rows:
        return "-"
    worst = max(r["moments"] / r["adamw_moments"] for r in rows)
    total = max(r["state"] / r["adamw"] for r in rows)
    overall = sum(r["moments"] for r in rows) / sum(r["adamw_moments"] for r in rows)
    if name == "galore":
        bound = max(rank / min(r["shape"]) for r in rows)
        check = (
            f"worst {worst:.4f} <= r/d {bound:.4f}: {worst <= bound + 1e-12}; with P {total:.4f}"
        )
    elif name == "frugal":
        check = f"worst {worst:.4f} <= rho {density}: {worst <= density + 1e-12}"
    elif name == "frugal-block":
        check = f"active blocks hold all their state (worst {worst:.3f})"
    else:
        check = f"worst {worst:.4f}; with indices {total:.4f}"
    return f"{check}; all projected {overall:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6", choices=["minilm-l6", "llama-config"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--density", type=float, default=0.25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--child", metavar="METHOD")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.child:
        return child(args.model, args.child, args.steps, args.rank, args.density, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.model}, batch {BATCH} x {LENGTH}, {args.steps} steps, {where}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"rank {args.rank}, density {args.density}")  # fmt: skip
    results = {name: measure(args, name) for name in args.methods}
    base = results["adamw"]
    print("| method | state bytes (ratio) | projected matrices: state / AdamW's | step time "
          "| first step | peak memory |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['state'] / 2**20:.1f} MiB ({r['state'] / base['state']:.3f}) "
            f"| {bounds(name, r['matrices'], args.rank, args.density)} "
            f"| {r['step']:.3f} s ({r['step'] / base['step']:.3f}) "
            f"| {r['first_step']:.3f} s ({r['first_step'] / base['first_step']:.3f}) "
            f"| {r['peak'] / 2**20:.0f} MiB ({r['peak'] / base['peak']:.3f}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
