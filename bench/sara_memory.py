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
import sys
from pathlib import Path

from sparse_memory import child, report  # this folder: the script's own path

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 2e-3  # the reference scripts' --threshold


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--targets", default="all-linear")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    report(run(args.steps, args.targets, args.threads))


if __name__ == "__main__":
    main()
