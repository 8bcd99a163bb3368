"""Peak training memory of SaRA on minilm-l6, as ratios to full fine-tuning and to LoRA at
(about) equal trainable parameters.

Why: SaRA's claim is memory: only the selected small-magnitude entries have gradients
and optimiser state (its "unstructured backpropagation"), so it should train near
LoRA's footprint, not near full fine-tuning's, although it edits the weights
themselves. Each configuration runs in its own subprocess with bench/sparse_memory.py's
`measure` (the task model, the method prepared, then /proc/self/clear_refs and the
generic training loop, as a cell does: suite/train/measure.PeakMemory; random token
ids, batch 16 x 128). SaRA runs first; LoRA's rank is then the nearest to SaRA's count
on the same targets (r (d_in + d_out) per layer). `sara-dense-grad` forms each layer's
whole weight gradient in one block before gathering (grad_chunk_rows above d_out), to
show what the block-wise gather saves.

    .venv/bin/python bench/sara_memory.py [--steps 8] [--targets all-linear] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
THRESHOLD = 2e-3  # the reference scripts' --threshold


def child(name: str, params: dict, lr: float, steps: int, threads: int) -> dict:
    spec = json.dumps([name, params, lr, steps, threads])
    out = subprocess.run(
        [sys.executable, str(HERE / "sparse_memory.py"), "--child", spec],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def lora_rank(count: int, targets: str) -> tuple[int, int]:
    """The LoRA rank whose count r * sum(d_in + d_out) over `targets` is nearest."""
    sys.path.insert(0, str(REPO))
    from suite.methods.targets import find_targets
    from suite.models.loading import load_backbone
    from suite.registry import Catalog

    preset = Catalog.discover().models.get("minilm-l6").spec
    layers = find_targets(load_backbone(preset), preset.resolve_targets(targets))
    per_rank = sum(m.in_features + m.out_features for _, m in layers)
    return max(1, round(count / per_rank)), per_rank


def run(steps: int, targets: str, threads: int) -> dict[str, dict]:
    sara = {"threshold": THRESHOLD, "targets": targets}
    results = {"sara": child("sara", sara, 5e-4, steps, threads)}
    r, _ = lora_rank(results["sara"]["adapter_params"], targets)
    lora = {"r": r, "alpha": 2 * r, "targets": targets}
    results[f"lora-r{r}"] = child("lora", lora, 1e-3, steps, threads)
    results["full"] = child("full", {}, 1e-4, steps, threads)
    dense = {**sara, "grad_chunk_rows": 100_000}
    results["sara-dense-grad"] = child("sara", dense, 5e-4, steps, threads)
    return results


def report(results: dict[str, dict]) -> None:
    mib = 2**20
    lora = next(v for k, v in results.items() if k.startswith("lora"))
    full = results["full"]
    print(
        f"{'config':16} {'trainable':>11} {'peak MiB':>9} {'growth MiB':>11} "
        f"{'peak/full':>10} {'peak/LoRA':>10} {'growth/full':>12} {'growth/LoRA':>12}"
    )
    for name, r in results.items():
        print(
            f"{name:16} {r['adapter_params']:>11,} {r['peak_bytes'] / mib:>9.1f} "
            f"{r['growth_bytes'] / mib:>11.1f} {r['peak_bytes'] / full['peak_bytes']:>10.3f} "
            f"{r['peak_bytes'] / lora['peak_bytes']:>10.3f} "
            f"{r['growth_bytes'] / full['growth_bytes']:>12.3f} "
            f"{r['growth_bytes'] / lora['growth_bytes']:>12.3f}"
        )
    if not all(r["isolated"] for r in results.values()):
        print("warning: /proc/self/clear_refs unavailable; peaks are not isolated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--targets", default="all-linear")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    report(run(args.steps, args.targets, args.threads))


if __name__ == "__main__":
    main()
