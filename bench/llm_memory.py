"""Training memory of LoRA, QLoRA, GaLore and full fine-tuning on smollm2-135m, broken
down (frozen base, trainable weights, gradients, optimiser state, activations and the
rest), measured beside closed-form estimates.

Measured: each method runs in its own subprocess through the runner's own steps
(suite/train/runner.py: load, prepare, train_cell) on rotten-tomatoes-mc, a few steps of
batch 8 (prompts up to 96 tokens, median 40: a short sequence), seed 0, so every method
sees the same batches. The parts are suite/train/memory.py's exact tensor bytes (kept at
their largest over the steps); the peak is PeakMemory's (CPU: VmHWM above the resident
size once the worker's cache is warm, so it holds the cell's own copy of the base);
activations and the rest = peak - the four parts. No evaluation runs.

Estimated: closed forms on SmolLM2-135M's shapes (below; checked against the measured
parameter count), fp32 = 4 bytes:

- frozen base: 4 P (LoRA); QLoRA: every linear and embedding matrix in nf4 (torchao:
  n/2 code bytes + n/64 int8 scalers + one bf16 factor per 64 x 256 block + a bf16 mean
  and a 16-entry bf16 table, n padded to a multiple of 64 x 256; the tied head once),
  the norms in bf16; bf16 for comparison: 2 P;
- trainable weights and gradients: 4 T (T trainable parameters);
- AdamW: 8 T + 4 bytes per trained tensor (torch keeps each `step` as a float32 tensor);
- GaLore: per projected m x n weight, 2 r max(m, n) moments + the r x min(m, n)
  projection; every other tensor (embedding, norms) AdamW's two moments (its step is a
  Python int: no bytes);
- activations: no closed form here (the measured figure also holds temporaries and
  allocator slack).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/llm_memory.py \
        [--steps 3] [--batch 8] [--methods lora qlora galore full]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL, TASK = "smollm2-135m", "rotten-tomatoes-mc"
METHODS = ("lora", "qlora", "galore", "full")
# SmolLM2-135M (suite/models/smollm2-135m.yaml, docs/llm.md): hidden, MLP width, layers,
# K/V width (3 KV heads of 64), vocabulary (tied head).
H, FF, LAYERS, KV, VOCAB = 576, 1536, 30, 192, 49152
PROJ = {
    "q": (H, H),
    "k": (KV, H),
    "v": (KV, H),
    "o": (H, H),
    "gate": (FF, H),
    "up": (FF, H),
    "down": (H, FF),
}  # (out, in) of each projection in every layer
GROUPS = {"qv": ["q", "v"], "attention": ["q", "k", "v", "o"], "mlp": ["gate", "up", "down"]}
NORMS = 2 * H * LAYERS + H
P = VOCAB * H + LAYERS * sum(m * n for m, n in PROJ.values()) + NORMS
TENSORS = 1 + LAYERS * (len(PROJ) + 2) + 1  # embedding, 7 matrices + 2 norms a layer, norm
NF4_UNIT = 64 * 256


def measure(method: str, steps: int, batch: int) -> dict:
    """One method's measured parts (runs in a child process)."""
    from suite.cells import expand
    from suite.models.storage import module_bytes
    from suite.registry import Catalog
    from suite.specs.budget import Budget
    from suite.specs.matrix import MatrixSpec
    from suite.train import caches
    from suite.train.fit import train_cell
    from suite.train.load import load
    from suite.train.prepare import prepare

    matrix = MatrixSpec(
        name="llm-memory", models=[MODEL], methods=[method], tasks=[TASK], seeds=[0],
        budget=Budget(max_steps=steps, batch_size=batch, warmup_ratio=0.0),
    )  # fmt: skip
    (cell,) = expand(matrix, Catalog.discover())
    setup = load(cell)
    ready = prepare(cell, setup)
    trained = train_cell(cell, setup, ready, None)
    out = {k: v for k, v in trained.items() if k.startswith("mem_") or "memory" in k}
    out |= {k: trained[k] for k in ("optimizer_state_bytes", "trainable_params", "train_tokens")}
    out |= {"base_bytes": ready.fields["base_bytes"], "params": cell.method.params}
    out["step_time_median_s"] = trained["step_time_median_s"]
    if cell.base_storage == "nf4":  # the same base in bf16, for the ratio (after training)
        out["bf16_base_bytes"] = module_bytes(caches.task_model(cell.model, 2, 0, "bf16").backbone)
    return out


def _child(method: str, steps: int, batch: int) -> dict:
    spec = json.dumps([method, steps, batch])
    done = subprocess.run(
        [sys.executable, __file__, "--child", spec], capture_output=True, text=True, cwd=REPO
    )
    if done.returncode:
        raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _matrices(targets) -> list[tuple[int, int]]:
    names = [targets] if isinstance(targets, str) else list(targets)
    projections = [p for name in names for p in GROUPS.get(name, [name])]
    return [PROJ[p] for p in projections] * LAYERS


def nf4_bytes(n: int) -> int:
    padded = math.ceil(n / NF4_UNIT) * NF4_UNIT
    return padded // 2 + padded // 64 + 2 * (padded // NF4_UNIT) + 2 + 2 * 16


def estimates(method: str, params: dict) -> dict[str, int]:
    """Closed-form bytes of the four tensor parts of `method` on SmolLM2-135M."""
    if method in ("lora", "qlora"):
        shapes = _matrices(params["targets"])
        t = sum(params["r"] * (m + n) for m, n in shapes)
        frozen = 4 * P
        if method == "qlora":
            matrices = [VOCAB * H] + [m * n for m, n in PROJ.values()] * LAYERS
            frozen = sum(nf4_bytes(n) for n in matrices) + 2 * NORMS
        return _parts(frozen, t, 8 * t + 4 * 2 * len(shapes))
    if method == "galore":
        r, shapes = params["rank"], _matrices(params["targets"])
        state = sum(2 * r * max(s) + r * min(s) for s in shapes)
        return _parts(0, P, 4 * (state + 2 * (P - sum(m * n for m, n in shapes))))
    return _parts(0, P, 8 * P + 4 * TENSORS)  # full fine-tuning, AdamW


def _parts(frozen: int, trainable: int, optimizer: int) -> dict[str, int]:
    return {
        "mem_frozen_weights_bytes": frozen,
        "mem_trainable_weights_bytes": 4 * trainable,
        "mem_gradients_bytes": 4 * trainable,
        "optimizer_state_bytes": optimizer,
    }


COLUMNS = {
    "frozen base": "mem_frozen_weights_bytes",
    "trainable": "mem_trainable_weights_bytes",
    "gradients": "mem_gradients_bytes",
    "optimiser": "optimizer_state_bytes",
}


def report(results: dict[str, dict]) -> None:
    mib = 2**20
    head = " | ".join(f"{c} MiB (est.)" for c in COLUMNS)
    print(f"| method | {head} | activations + rest MiB | peak MiB | step s |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    for method, got in results.items():
        est = estimates(method, got["params"])
        cells = " | ".join(f"{got[k] / mib:.1f} ({est[k] / mib:.1f})" for k in COLUMNS.values())
        rest = got["mem_activations_other_bytes"]
        print(
            f"| {method} | {cells} | {rest / mib:.1f} | {got['peak_memory_bytes'] / mib:.1f} "
            f"| {got['step_time_median_s']:.2f} |"
        )
    _ratios(results)


def _ratios(results: dict[str, dict]) -> None:
    if "galore" in results and "full" in results:
        g, a = (results[m]["optimizer_state_bytes"] for m in ("galore", "full"))
        print(f"GaLore optimiser state / AdamW's (full fine-tuning): {g / a:.3f} ({g:,} / {a:,})")
    if "qlora" in results:
        q = results["qlora"]
        print(
            f"QLoRA nf4 base / bf16 base: {q['base_bytes'] / q['bf16_base_bytes']:.3f} "
            f"({q['base_bytes']:,} / {q['bf16_base_bytes']:,}; bf16 closed form 2P = {2 * P:,})"
        )
    for method, got in results.items():
        print(f"{method}: trainable params {got['trainable_params']:,}, P = {P:,}, {got}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        print(json.dumps(measure(*json.loads(args.child))))
        return
    results = {}
    for method in args.methods:
        results[method] = _child(method, args.steps, args.batch)
        print(method, json.dumps(results[method]), flush=True)
    report(results)


if __name__ == "__main__":
    main()
