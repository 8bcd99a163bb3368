"""League cells per hour under today's settings and the new ones, alternated in one run.

The same cells (minilm-l6 x --task, LoRA and full fine-tuning by default) run in this
process through the workers' code path (suite/scheduler/worker.py: calibration, phases,
the row's fields), one after another, alternating:

  today: fp32; latency measured as before this change (a warm-up and the latency
         batches unmerged, again merged, two drift forwards: `measure` without
         evaluation's timed forwards, one forward fewer than the old code ran);
  new:   Budget.autocast (bf16 by default; --autocast none for fp32), length bucketing
         (--bucket N windows of N batches; 0 for none), and latency from evaluation's
         own test forwards (suite/train/costs.py).

Dynamic padding (each batch padded to its longest row) is on in both: it was already
how collators batch. The worker's caches are warmed first (one throwaway cell), so every
timed cell finds its model and tokenised data cached, as a league worker's later cells do.

Prints per setting and method: cells per hour (3,600 / the cell's wall time inside the
worker), the mean seconds per phase, test accuracy, training FLOP/s as a fraction of
the calibrated matmul peak of the dtype the cell computed in (padded tokens and real
tokens), and the ratio new / today of cells per hour. With --step it also times one full
fine-tuning step of the model (batch x 128 tokens) in fp32, under bf16 autocast, and with
bf16 weights.

Usage: PYTHONPATH=. .venv/bin/python bench/cell_throughput.py [--task drug-condition]
           [--steps 15] [--rounds 2] [--threads 1] [--bucket 8] [--autocast bf16] [--step]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cells(args, new: bool) -> list:
    from suite.cells import expand
    from suite.registry import Catalog
    from suite.specs.matrix import Budget, MatrixSpec

    extra = {}
    if new:
        extra["autocast"] = None if args.autocast == "none" else args.autocast
        extra["length_bucket_window"] = args.bucket or None
    matrix = MatrixSpec(
        name="throughput", models=[args.model], methods=args.methods, tasks=[args.task],
        seeds=[0], profile="cpu-local",
        budget=Budget(max_steps=args.steps, batch_size=args.batch_size, **extra),
    )  # fmt: skip
    return expand(matrix, Catalog.discover())


def run_one(worker, cell, new: bool) -> dict:
    """One cell through the worker; `new` False measures latency as before."""
    from suite.results import PHASES, CellResult, phase_column
    from suite.train import runner

    measure = runner.measure
    if not new:
        runner.measure = lambda c, s, r, e, timer: measure(c, s, r, e, None)
    try:
        report = worker.run(cell, submitted_unix=time.time())
    finally:
        runner.measure = measure
    row = CellResult.assemble(cell.cell_id, report)
    if row.status != "ok":
        raise SystemExit(f"{cell.title()}: {row.status}\n{row.error}")
    wall = row.cell_wall_s + row.phase_worker_s + row.phase_dispatch_s
    return {
        "wall": wall,
        **{p: getattr(row, phase_column(p)) or 0.0 for p in PHASES if p != "result_to_row"},
        "acc": row.test_metrics.get("accuracy", float("nan")),
        "frac": row.flops_fraction_of_peak,
        "frac_real": row.flops_fraction_of_peak_real,
        "step": row.step_time_median_s,
        "real_share": row.train_real_tokens / row.train_tokens,
        "peak": (row.hardware_profile or {}).get("matmul_flops"),
        "dtype": (row.hardware_profile or {}).get("dtype"),
    }


def summarise(label: str, runs: list[dict]) -> float:
    from suite.results import PHASES

    mean = {k: statistics.fmean(r[k] for r in runs) for k in runs[0] if k != "dtype"}
    per_hour = 3600.0 / mean["wall"]
    phases = ", ".join(f"{p} {mean[p]:.1f}" for p in PHASES if p in mean and mean[p] >= 0.05)
    print(
        f"  {label:<14} {per_hour:6.1f} cells/h  wall {mean['wall']:6.1f} s  "
        f"step {mean['step']:.3f} s  acc {mean['acc']:.3f}  "
        f"FLOP/s {mean['frac']:.1%} of the {runs[0]['dtype']} peak "
        f"({mean['peak'] / 1e9:.0f} GFLOP/s), {mean['frac_real']:.1%} on real tokens "
        f"({mean['real_share']:.0%} of tokens)"
    )
    print(f"  {'':<14} phases (s): {phases}")
    return per_hour


def throughput(args) -> None:
    import torch

    from suite.scheduler.worker import CellWorker

    torch.set_num_threads(args.threads)
    worker = CellWorker(cache_dir=str(REPO / "results" / "cache"), threads=args.threads)
    today, new = cells(args, False), cells(args, True)
    run_one(worker, today[0], False)  # warm the worker's caches and fp32 calibration
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for old_cell, new_cell in zip(today, new, strict=True):
            method = old_cell.method.label
            for label, cell, is_new in (("today", old_cell, False), ("new", new_cell, True)):
                runs.setdefault((method, label), []).append(run_one(worker, cell, is_new))
                print(f"round {r + 1} {method} {label}: {runs[(method, label)][-1]['wall']:.1f} s")
    print(f"\n{args.model} x {args.task}, {args.steps} steps of {args.batch_size}, "
          f"{args.threads} thread(s), {args.rounds} round(s) alternated")  # fmt: skip
    for method in args.methods:
        print(method)
        before = summarise("today", runs[(method, "today")])
        after = summarise("new", runs[(method, "new")])
        print(f"  ratio new / today: {after / before:.2f}x cells per hour")


def step_times(args) -> None:
    """One full fine-tuning step (forward, backward, AdamW) of the model on batch x 128
    random tokens: fp32, bf16 autocast (fp32 weights), bf16 weights."""
    import torch

    from suite.models.loading import load_backbone
    from suite.registry import Catalog

    torch.set_num_threads(args.threads)
    preset = Catalog.discover().models.get(args.model).spec
    ids = torch.randint(
        1000, 20000, (args.batch_size, 128), generator=torch.Generator().manual_seed(0)
    )
    mask = torch.ones_like(ids)

    def median_step(model, autocast: bool) -> float:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        times = []
        for _ in range(args.step_repeats + 1):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = (
                    model(input_ids=ids, attention_mask=mask)
                    .last_hidden_state.float()
                    .pow(2)
                    .mean()
                )
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])

    base = load_backbone(preset).train()
    results = {}
    for label, dtype, autocast in (
        ("fp32", torch.float32, False), ("bf16 autocast", torch.float32, True),
        ("bf16 weights", torch.bfloat16, False), ("fp32 again", torch.float32, False),
    ):  # fmt: skip
        import copy

        results[label] = median_step(copy.deepcopy(base).to(dtype), autocast)
    ref = statistics.fmean([results["fp32"], results["fp32 again"]])
    print(f"\none full fine-tuning step, {args.model}, {args.batch_size} x 128, {args.threads} thread(s), "
          f"median of {args.step_repeats}:")  # fmt: skip
    for label, s in results.items():
        print(f"  {label:<14} {s:.3f} s  ({ref / s:.2f}x fp32)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="drug-condition")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--methods", nargs="+", default=["lora", "full"])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bucket", type=int, default=8)
    parser.add_argument("--autocast", default="bf16", choices=["bf16", "none"])
    parser.add_argument("--step", action="store_true", help="also time one full FT step")
    parser.add_argument("--step-only", action="store_true")
    parser.add_argument("--step-repeats", type=int, default=5)
    args = parser.parse_args()
    if not args.step_only:
        throughput(args)
    if args.step or args.step_only:
        step_times(args)


if __name__ == "__main__":
    main()
