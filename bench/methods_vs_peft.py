"""Native LoRA and DoRA against Hugging Face PEFT's on minilm-l6: time, memory, latency.

Prints native/PEFT ratios (below 1 means peftbench's implementation is cheaper):

- training step: median seconds of forward + backward + AdamW step, batch 16 x 128
  random tokens, after warm-up; the two implementations alternate step by step (and
  swap order every round) so drift in the machine's load hits both alike;
- peak memory: each implementation trains a few steps in its own subprocess; the
  resident high-water mark (VmHWM) is reset through /proc/self/clear_refs once the
  model is built (as suite/train/measure.py does), so the number is training's peak;
- inference latency: median per batch, unmerged and merged, alternating likewise.

Rows per base dtype (`--dtypes float32 bfloat16`): on a bf16 base, peftbench keeps the
adapter in fp32 (suite/train/precision.py) and PEFT does by default (autocast_adapter_dtype);
both train through peftbench's driver, whose fp32 master weights cover the bf16 head alike.

    .venv/bin/python bench/methods_vs_peft.py [--steps 10] [--methods lora dora]
        [--dtypes float32 bfloat16] [--device cuda]

On CUDA, peak memory is `max_memory_allocated` after a reset (weights included), and
every timed call ends with a synchronize.
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

BATCH, LENGTH, R, ALPHA = 16, 128, 8, 16
DEVICE = torch.device("cpu")  # set from --device in main()


def build(method: str, impl: str, dtype: str = "float32"):
    """(task model, merge, unmerge) for LoRA or DoRA, native or PEFT, on q and v."""
    from suite import conformance as C
    from suite.cells import resolve_method
    from suite.conformance_bench import bench_from_backbone
    from suite.methods.api import PrepareContext
    from suite.models.loading import load_backbone
    from suite.registry import Catalog
    from suite.specs.matrix import MethodEntry

    # Only what this needs (the preset and three methods): other plugins being edited
    # in the same tree must not stop a long benchmark.
    roots = [REPO / "suite", *(REPO / "methods" / m for m in ("lora", "dora", "peft"))]
    catalog = Catalog.discover(roots, builtin=False)
    preset = catalog.models.get("minilm-l6").spec
    backbone = load_backbone(preset).to(getattr(torch, dtype))
    model = bench_from_backbone(backbone, preset, vocab=30522).build(0)
    params = {"r": R, "alpha": ALPHA, "targets": "qv"}
    if impl == "native":
        spec = C.instantiate(resolve_method(catalog, MethodEntry(method=method, params=params)))
    else:
        config = {"r": R, "lora_alpha": ALPHA, "use_dora": method == "dora"}
        entry = MethodEntry(method="peft", params={"config": config, "targets": "qv"})
        spec = C.instantiate(resolve_method(catalog, entry))
    from suite.train.prepare import prepare_model

    # The runner's path: the native adapter's new tensors are cast to fp32 on a bf16 base;
    # the peft bridge applies PEFT's own cast.
    prepared = prepare_model(spec, model, PrepareContext(preset, 0, DEVICE)).prepared
    return prepared.model.to(DEVICE), prepared.merge, prepared.unmerge


def batch(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    data = {
        "input_ids": torch.randint(1000, 30000, (BATCH, LENGTH), generator=gen),
        "attention_mask": torch.ones(BATCH, LENGTH, dtype=torch.long),
        "labels": torch.randint(0, 3, (BATCH,), generator=gen),
    }
    return {k: v.to(DEVICE) for k, v in data.items()}


def train_step(model, driver, data) -> None:
    loss = torch.nn.functional.cross_entropy(model(**data).float(), data["labels"])
    driver.optimizer.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    loss.backward()
    driver.optimizer_step()


def optimizer(model):
    """peftbench's training driver (AdamW, fp32 master weights for bf16 tensors)."""
    from suite.methods.api import Prepared
    from suite.train.loop import LoopConfig, TrainingDriver

    return TrainingDriver(Prepared(model=model), LoopConfig(steps=10**6, lr=1e-4))


def alternate(fns: dict, rounds: int, warmup: int) -> dict[str, float]:
    """Median seconds of each fn, called in alternation (order swapped every round)."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(warmup + rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            if DEVICE.type == "cuda":
                torch.cuda.synchronize(DEVICE)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


def timings(method: str, steps: int, dtype: str) -> dict[str, float]:
    """Training-step and inference ratios native/PEFT for one method."""
    built = {impl: build(method, impl, dtype) for impl in ("native", "peft")}
    data = batch()
    opts = {impl: optimizer(m) for impl, (m, _, _) in built.items()}
    for model, _, _ in built.values():
        model.train()
    step = alternate(
        {i: (lambda i=i: train_step(built[i][0], opts[i], data)) for i in built}, steps, 2
    )
    out = {"train step": step["native"] / step["peft"]}
    for model, _, _ in built.values():
        model.eval()

    def infer(i):
        with torch.inference_mode():
            built[i][0](**data)

    for mode in ("unmerged", "merged"):
        if mode == "merged":
            for _, merge, _ in built.values():
                merge()
        lat = alternate({i: (lambda i=i: infer(i)) for i in built}, steps, 2)
        out[f"inference {mode}"] = lat["native"] / lat["peft"]
    return out


def peak_memory_child(method: str, impl: str, steps: int, dtype: str) -> None:
    """Run in a subprocess: print the training peak (bytes) after a reset."""
    from suite.train.measure import PeakMemory

    model, _, _ = build(method, impl, dtype)
    model.train()
    opt, data = optimizer(model), batch()
    meter = PeakMemory(DEVICE)
    meter.reset()
    for _ in range(steps):
        train_step(model, opt, data)
    print(json.dumps({"peak": meter.peak_bytes(), "isolated": meter.isolated}))


def peak_memory(method: str, impl: str, steps: int, dtype: str) -> int:
    cmd = [sys.executable, __file__, "--child", method, impl, "--steps", str(steps)]
    cmd += ["--device", DEVICE.type, "--dtypes", dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["isolated"]:
        print(f"warning: {method}/{impl} peak memory not isolated", file=sys.stderr)
    return int(result["peak"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=["lora", "dora"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "IMPL"))
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.child:
        peak_memory_child(*args.child, steps=3, dtype=args.dtypes[0])
        return
    import peft

    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "CPU"
    print(f"minilm-l6, q+v, r={R}, batch {BATCH} x {LENGTH} tokens, {where}, {args.steps} steps")
    print(f"torch {torch.__version__}, peft {peft.__version__}, {torch.get_num_threads()} threads")
    print(
        "| method | base | train step time | peak memory (training) | inference unmerged "
        "| inference merged |"
    )
    print("|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        for method in args.methods:
            ratios = timings(method, args.steps, dtype)
            mem = {impl: peak_memory(method, impl, 3, dtype) for impl in ("native", "peft")}
            print(
                f"| {method} | {dtype} | {ratios['train step']:.3f} "
                f"| {mem['native'] / mem['peft']:.3f} "
                f"({mem['native'] / 2**20:.0f} / {mem['peft'] / 2**20:.0f} MiB) "
                f"| {ratios['inference unmerged']:.3f} | {ratios['inference merged']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
