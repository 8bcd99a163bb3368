"""ALLoRA's training step against plain LoRA's on minilm-l6: the cost of its custom backward.

Prints ALLoRA / LoRA for the median training step (forward + backward + AdamW step) on
minilm-l6's query and value, r = 8, batch 16 x 128 random tokens, after warm-up. The two
alternate step by step (order swapped every round, as bench/methods_vs_peft.py does) so
drift in the machine's load hits both alike. ALLoRA's backward adds one tokens x d_out x r
product per layer (delta diag(s) B beside delta B) and an r x r Gram matrix; the target is
at most 1.1x LoRA's step.

    .venv/bin/python bench/allora_step.py [--steps 20] [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import methods_vs_peft as common  # noqa: E402


def build(method: str, dtype: str):
    """The task model with `method` (lora or allora, r = 8, q and v), the runner's path."""
    from suite import conformance as C
    from suite.cells import resolve_method
    from suite.conformance_bench import bench_from_backbone
    from suite.methods.api import PrepareContext
    from suite.models.loading import load_backbone
    from suite.registry import Catalog
    from suite.specs.matrix import MethodEntry
    from suite.train.prepare import prepare_model

    roots = [REPO / "suite", *(REPO / "methods" / m for m in ("lora", "allora"))]
    catalog = Catalog.discover(roots, builtin=False)
    preset = catalog.models.get("minilm-l6").spec
    backbone = load_backbone(preset).to(getattr(torch, dtype))
    model = bench_from_backbone(backbone, preset, vocab=30522).build(0)
    entry = MethodEntry(method=method, params={"r": common.R, "targets": "qv"})
    spec = C.instantiate(resolve_method(catalog, entry))
    prepared = prepare_model(spec, model, PrepareContext(preset, 0, common.DEVICE)).prepared
    return prepared.model.to(common.DEVICE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    common.DEVICE = torch.device(args.device)
    models = {m: build(m, args.dtype) for m in ("lora", "allora")}
    opts = {m: common.optimizer(model) for m, model in models.items()}
    data = common.batch()
    for model in models.values():
        model.train()
    step = common.alternate(
        {m: (lambda m=m: common.train_step(models[m], opts[m], data)) for m in models},
        args.steps,
        3,
    )
    where = torch.cuda.get_device_name(common.DEVICE) if common.DEVICE.type == "cuda" else "CPU"
    print(
        f"minilm-l6, q+v, r={common.R}, batch {common.BATCH} x {common.LENGTH}, {args.dtype}, "
        f"{where}, {torch.get_num_threads()} threads, {args.steps} alternated steps"
    )
    print(f"median step: lora {step['lora'] * 1e3:.1f} ms, allora {step['allora'] * 1e3:.1f} ms")
    print(f"allora / lora train step: {step['allora'] / step['lora']:.3f}")


if __name__ == "__main__":
    main()
