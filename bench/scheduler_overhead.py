"""Scheduler overhead, worker scaling and cache reuse, on tiny cells (CPU, embedded Ray).

Prints:
  (a) overhead ratio = matrix wall time / sum of in-cell compute time (each cell's
      cell_wall_s, measured inside the worker), with one worker. Wall time is from
      run_plan's start (Ray start-up, worker start, calibration, database writes
      included) to its end; the steady-state figure leaves out the one-off start-up
      (from the first cell's start to the last result).
  (b) throughput ratio = cells/s with 2 workers / cells/s with 1 worker, one torch
      thread per worker (the cpu-local profile asks for one CPU per worker).
  (c) model loads and tokenisations summed over workers (goal: one load per worker
      per model, one tokenisation per task and tokenizer).

Usage: .venv/bin/python bench/scheduler_overhead.py [--cells 12] [--steps 20]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_plugin(root: Path) -> Path:
    """A 2-layer random BERT with MiniLM's tokenizer, as a plugin model preset."""
    import sys

    sys.path.insert(0, str(REPO))
    from suite.conformance_bench import write_tiny_bert_plugin
    from suite.registry import Catalog

    return write_tiny_bert_plugin(root, Catalog.discover())


def matrix(folder: Path, cells: int, steps: int) -> Path:
    methods = ["head", "lora", "bitfit"]
    seeds = list(range((cells + len(methods) - 1) // len(methods)))
    path = folder / "overhead.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: overhead
        models: [tiny-bert]
        methods: [{", ".join(methods)}]
        tasks: [drug-condition]
        seeds: {seeds}
        budget: {{max_steps: {steps}, batch_size: 16}}
        """)
    )
    return path


def run(plugins: Path, matrix_path: Path, results: Path, workers: int) -> dict:
    from suite.driver import plan, run_plan
    from suite.registry import Catalog
    from suite.scheduler.ray_executor import RayExecutor
    from suite.store.store import Store

    store = Store(results / "r.duckdb")
    the_plan = plan(Catalog.discover([plugins]), str(matrix_path), store)
    starts: list[float] = []

    class Clock:
        def start_cell(self, cell) -> None:
            starts.append(time.perf_counter())

        def finish_cell(self, cell, result) -> None:
            pass

    executor = RayExecutor(results_dir=results, workers=workers, progress=Clock())
    t0 = time.perf_counter()
    summary = run_plan(the_plan, store, executor, Clock())
    wall = time.perf_counter() - t0
    assert summary.all_ok, summary.counts()
    compute = sum(r.cell_wall_s for r in summary.results)
    stats = executor.worker_stats
    return {
        "cells": len(summary.results),
        "wall": wall,
        "steady": wall - (min(starts) - t0) if starts else wall,
        "compute": compute,
        "model_loads": sum(s["model_loads"] for s in stats),
        "tokenizations": sum(s["tokenizations"] for s in stats),
        "tokenized_loads": sum(s["tokenized_loads"] for s in stats),
        "workers": len(stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pb-overhead-") as tmp:
        root = Path(tmp)
        plugins = tiny_plugin(root / "plugins")
        path = matrix(root, args.cells, args.steps)
        one = run(plugins, path, root / "w1", workers=1)
        two = run(plugins, path, root / "w2", workers=2)
    print(f"matrix: {one['cells']} tiny-bert cells, max_steps {args.steps}")
    for name, r in (("1 worker", one), ("2 workers", two)):
        print(
            f"{name:>9}: wall {r['wall']:.1f} s (steady state {r['steady']:.1f} s), "
            f"in-cell compute {r['compute']:.1f} s, {r['cells'] / r['wall']:.3f} cells/s"
        )
    print(
        f"(a) overhead ratio, 1 worker: {one['wall'] / one['compute']:.3f} "
        f"(steady state {one['steady'] / one['compute']:.3f}; goal <= 1.15)"
    )
    print(f"(b) throughput ratio 2 workers / 1 worker: {one['wall'] / two['wall']:.2f}")
    for name, r in (("1 worker", one), ("2 workers", two)):
        print(
            f"(c) {name}: {r['workers']} worker(s), model loads {r['model_loads']}, "
            f"tokenisations {r['tokenizations']}, tokenised-data loads from disk "
            f"{r['tokenized_loads']} (1 model, 1 task x tokenizer)"
        )


if __name__ == "__main__":
    main()
