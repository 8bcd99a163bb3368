"""Learning curves for choosing a protocol's budget: accuracy against training epochs.

Runs head, LoRA and full fine-tuning (or --methods) on one task at several epoch budgets,
each at the method's default learning rate, one seed, through `peftbench run` (so the
cells are real cells, stored and resumable), then prints validation and test accuracy per
budget and the plateau rule of docs/league.md: a method is on its plateau at budget E when
its validation accuracy at E is within --tolerance of its best at any budget >= 4 x E.

Usage:
  .venv/bin/python bench/learning_curves.py --task rotten-tomatoes \
      --epochs 0.5 1 2 4 --db results/curves.duckdb [--batch-size 32] [--workers 2] \
      [--autocast bf16] [--bucket 8]

--autocast/--bucket set the budget's precision and length bucketing; each setting is its
own curve (its own matrices and protocols), printed beside the others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def matrix_file(folder: Path, task: str, methods: list[str], epochs: float, args) -> Path:
    """One matrix per budget, named after the task and the epochs (each its own protocol)."""
    name = f"curve-{task}-e{str(epochs).replace('.', 'p')}{_settings_suffix(args)}"
    spec = {
        "name": name,
        "description": f"Learning curve point: {epochs} epochs of {task} (bench/learning_curves.py).",
        "models": [args.model],
        "methods": methods,
        "tasks": [task],
        "seeds": [args.seed],
        "profile": args.profile,
        "budget": {
            "epochs": epochs,
            "batch_size": args.batch_size,
            "warmup_ratio": 0.06,
            "grad_clip": 1.0,
            **_settings(args),
        },
        "baseline_method": "lora",
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _settings(args) -> dict:
    """The budget's precision and batching options (unset: fp32, no bucketing)."""
    out: dict = {}
    if args.autocast:
        out["autocast"] = args.autocast
    if args.bucket:
        out["length_bucket_window"] = args.bucket
    return out


def _settings_suffix(args) -> str:
    return (f"-{args.autocast}" if args.autocast else "") + (
        f"-b{args.bucket}" if args.bucket else ""
    )


def _settings_words(budget: str) -> str:
    import json

    data = json.loads(budget)
    words = [data.get("autocast") or "fp32"]
    if data.get("length_bucket_window"):
        words.append(f"bucket {data['length_bucket_window']}")
    return " ".join(words)


def run(path: Path, args) -> None:
    cmd = [sys.executable, "-m", "suite.cli", "run", str(path), "--db", str(args.db)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=False)


def table(args) -> None:
    import duckdb

    con = duckdb.connect(str(args.db), read_only=True)
    frame = con.execute(
        "SELECT method, budget, CAST(json_extract(budget, '$.epochs') AS DOUBLE) AS epochs, "
        "val_primary AS val, test_primary AS test, train_steps AS steps, "
        "round(cell_wall_s) AS wall_s, round(phase_train_s) AS train_s, status FROM results "
        "WHERE task = ? AND matrix LIKE 'curve-%' ORDER BY method, epochs",
        [args.task],
    ).df()
    frame.insert(1, "settings", frame.pop("budget").map(_settings_words))
    frame = frame.sort_values(["settings", "method", "epochs"])
    print(frame.to_string(index=False))
    print(f"\nplateau (validation within {args.tolerance} of the best at >= 4x the epochs):")
    for (_settings_name, method), rows in frame.groupby(["settings", "method"]):
        for _, row in rows.iterrows():
            later = rows[rows.epochs >= 4 * row.epochs - 1e-9]
            if later.empty:
                continue
            gap = later.val.max() - row.val
            verdict = "on plateau" if gap <= args.tolerance else "below plateau"
            print(
                f"  {row.settings:14s} {method:6s} {row.epochs:>5} epochs: "
                f"{gap:+.4f} to best later -> {verdict}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--methods", nargs="+", default=["head", "lora", "full"])
    parser.add_argument("--epochs", nargs="+", type=float, default=[0.5, 1, 2, 4])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--profile", default="cpu-local")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--db", type=Path, default=REPO / "results" / "curves.duckdb")
    parser.add_argument("--autocast", choices=["bf16"], default=None, help="Budget.autocast")
    parser.add_argument("--bucket", type=int, default=None, help="Budget.length_bucket_window")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        with tempfile.TemporaryDirectory() as tmp:
            for epochs in sorted(args.epochs):
                run(matrix_file(Path(tmp), args.task, args.methods, epochs, args), args)
    table(args)


if __name__ == "__main__":
    main()
