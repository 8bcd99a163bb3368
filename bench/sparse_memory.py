"""Peak training memory of sparse fine-tuning (SHiRA, SpIEL at 1% density) against LoRA
at (about) equal trainable parameters and against full fine-tuning, on minilm-l6.

Why: a sparse update stored as indices + values must train with value-sized optimiser
state; if an implementation kept a dense delta or dense Adam moments it would sit near
full fine-tuning instead of near LoRA. Each configuration runs in its own subprocess
(so allocator state cannot leak between them), builds the task model, prepares the
method, then resets the resident high-water mark through /proc/self/clear_refs and
runs the generic training loop (suite/train/loop.py) exactly as a cell does
(suite/train/measure.py's PeakMemory). Batches are random token ids, batch 16 x 128
tokens. Printed: each configuration's peak (VmHWM), its growth over the resident set at
the reset, and the ratios to LoRA and to full fine-tuning.

    .venv/bin/python bench/sparse_memory.py [--steps 8] [--targets qv] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DENSITY = 0.01
BATCH, LENGTH, CLASSES = 16, 128, 10


def configs(targets: str) -> dict[str, tuple[str, dict, float]]:
    """name -> (method, params, lr). LoRA r=2 is the nearest rank to 1% of 384 x 384."""
    return {
        "lora-r2": ("lora", {"r": 2, "alpha": 4, "targets": targets}, 1e-3),
        "shira-1%": ("shira", {"density": DENSITY, "targets": targets}, 1e-3),
        "spiel-1%": ("spiel", {"density": DENSITY, "targets": targets}, 1e-3),
        "full": ("full", {}, 1e-4),
    }


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(method_name: str, params: dict, lr: float, steps: int, threads: int) -> dict:
    """Run one configuration in this process and return its memory figures."""
    import gc
    import itertools

    import torch

    from suite.cells import resolve_method
    from suite.conformance import instantiate, loss_fn
    from suite.methods.api import PrepareContext
    from suite.models.loading import load_backbone
    from suite.models.taskmodel import TaskModel
    from suite.registry import Catalog
    from suite.specs.matrix import MethodEntry
    from suite.train.loop import LoopConfig, train
    from suite.train.measure import PeakMemory

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    catalog = Catalog.discover()
    preset = catalog.models.get("minilm-l6").spec
    backbone = load_backbone(preset).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    model = TaskModel(backbone, CLASSES, preset.pooling, seed=0)
    gen = torch.Generator().manual_seed(0)
    batches = [
        {
            "input_ids": torch.randint(1000, 30000, (BATCH, LENGTH), generator=gen),
            "attention_mask": torch.ones(BATCH, LENGTH, dtype=torch.long),
            "labels": torch.randint(0, CLASSES, (BATCH,), generator=gen),
        }
        for _ in range(4)
    ]
    method = instantiate(resolve_method(catalog, MethodEntry(method=method_name, params=params)))
    ctx = PrepareContext(
        preset=preset,
        seed=0,
        device=torch.device("cpu"),
        train_batches=lambda: itertools.cycle(batches),
        loss_fn=loss_fn,
    )
    prepared = method.prepare(model, ctx)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = sum(p.numel() for p in model.head.parameters())
    gc.collect()
    memory = PeakMemory(torch.device("cpu"))
    rss_at_reset = _rss_bytes()
    memory.reset()
    cfg = LoopConfig(steps=steps, lr=lr, weight_decay=0.0, warmup_ratio=0.0, grad_clip=1.0)
    stats = train(prepared, itertools.cycle(batches), loss_fn, cfg)
    peak = memory.peak_bytes()
    return {
        "adapter_params": trainable - head,
        "peak_bytes": peak,
        "growth_bytes": peak - rss_at_reset,
        "isolated": memory.isolated,
        "final_loss": stats.final_loss,
    }


def child(method_name: str, params: dict, lr: float, steps: int, threads: int) -> dict:
    """`measure` in a fresh subprocess (its own peak), as this script's `--child`."""
    spec = json.dumps([method_name, params, lr, steps, threads])
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", spec],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_all(steps: int, targets: str, threads: int) -> dict[str, dict]:
    return {
        name: child(method_name, params, lr, steps, threads)
        for name, (method_name, params, lr) in configs(targets).items()
    }


def report(results: dict[str, dict]) -> None:
    """Each configuration's trainable count and peaks, also as ratios to the first LoRA
    configuration's and to full fine-tuning's (bench/sara_memory.py prints it too)."""
    mib = 2**20
    lora = next(v for k, v in results.items() if k.startswith("lora"))
    full = results["full"]
    w = max(10, *(len(name) for name in results))
    print(
        f"{'config':{w}} {'adapter params':>15} {'peak MiB':>9} {'growth MiB':>11} "
        f"{'peak/LoRA':>10} {'peak/full':>10} {'growth/LoRA':>12} {'growth/full':>12}"
    )
    for name, r in results.items():
        print(
            f"{name:{w}} {r['adapter_params']:>15,} {r['peak_bytes'] / mib:>9.1f} "
            f"{r['growth_bytes'] / mib:>11.1f} {r['peak_bytes'] / lora['peak_bytes']:>10.3f} "
            f"{r['peak_bytes'] / full['peak_bytes']:>10.3f} "
            f"{r['growth_bytes'] / lora['growth_bytes']:>12.3f} "
            f"{r['growth_bytes'] / full['growth_bytes']:>12.3f}"
        )
    if not all(r["isolated"] for r in results.values()):
        print("warning: /proc/self/clear_refs unavailable; peaks are not isolated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--targets", default="qv")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        print(json.dumps(measure(*json.loads(args.child))))
        return
    report(run_all(args.steps, args.targets, args.threads))


if __name__ == "__main__":
    main()
