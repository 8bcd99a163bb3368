"""Worker layout on a small machine: N workers x 1 torch thread against 1 worker x N threads.

Runs the same league-like matrix (minilm-l6 x {lora, full} x --task x seeds 0-1, a short
budget under the league's precision: bf16 autocast and length bucketing) twice through
the CLI, each into a fresh store: once on the `cpu-local` profile (one CPU and one torch
thread per Ray worker, so as many workers as cores) and once on a profile that gives one
worker every core and as many torch threads. Prints each matrix's wall time, cells per
hour and the ratio. docs/scheduling.md quotes the result that made `cpu-local` the
default.

Usage: PYTHONPATH=. .venv/bin/python bench/worker_layout.py [--task rotten-tomatoes]
           [--steps 60] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ["lora", "full"]
SEEDS = [0, 1]


def one_worker_profile(plugins: Path, cores: int) -> str:
    name = "cpu-one-worker"
    folder = plugins / "hardware_profiles"
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\n"
        f"description: One Ray worker takes all {cores} cores and runs {cores} torch threads.\n"
        f"resources: {{num_cpus: {cores}}}\ntorch_threads: {cores}\nexpected: {{type: cpu}}\n"
    )
    return name


def matrix(root: Path, profile: str, args) -> Path:
    path = root / f"layout-{profile}.yaml"
    path.write_text(
        f"name: layout-{profile}\n"
        "description: Worker layout measurement (bench/worker_layout.py).\n"
        f"models: [minilm-l6]\nmethods: [{', '.join(METHODS)}]\ntasks: [{args.task}]\n"
        f"seeds: [{', '.join(map(str, SEEDS))}]\nprofile: {profile}\n"
        f"budget: {{max_steps: {args.steps}, batch_size: 32, warmup_ratio: 0.06, "
        "grad_clip: 1.0, autocast: bf16, length_bucket_window: 8}\n"
    )
    return path


def timed_run(spec: Path, plugins: Path, db: Path) -> float:
    command = [sys.executable, "-m", "suite.cli", "run", str(spec), "--plugins", str(plugins)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    done = subprocess.run([*command, "--db", str(db)], cwd=REPO, env=env, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{spec.name} failed:\n{done.stdout.decode()[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="rotten-tomatoes")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    cells = len(METHODS) * len(SEEDS)
    with tempfile.TemporaryDirectory(prefix="peftbench-layout-") as tmp:
        root = Path(tmp)
        plugins = root / "plugins"
        layouts = {
            f"{args.cores} workers x 1 thread": "cpu-local",
            f"1 worker x {args.cores} threads": one_worker_profile(plugins, args.cores),
        }
        walls = {}
        for label, profile in layouts.items():
            walls[label] = timed_run(
                matrix(root, profile, args), plugins, root / f"{profile}.duckdb"
            )
            print(f"{label}: {cells} cells in {walls[label]:.0f} s, "
                  f"{3600 * cells / walls[label]:.1f} cells/hour", flush=True)  # fmt: skip
    many, one = walls.values()
    print(f"ratio (cells per hour, workers x 1 thread / 1 worker x threads): {one / many:.2f}")


if __name__ == "__main__":
    main()
