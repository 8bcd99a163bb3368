"""One LoRA training step on a causal-LM preset, fp32 against bf16 autocast: median wall
and CPU seconds per step after warm-up, and their ratios.

peftbench's own LoRA (r=8, alpha 16, on q and v: the `lora` cell's adapter, prepared as
the runner prepares it), peftbench's training driver (AdamW), and the causal-LM next-token
loss over every position of a batch of random tokens (the LM head and its 49k-way softmax
at all of them, as a domain-adaptation step computes; a multiple-choice step in the
shared-prompt form needs the head at one position per example). The two settings
alternate step by step, the order swapped every round, so drift in the machine's load
hits both alike; CPU seconds (time.process_time) are the steadier figure on a shared
machine.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python bench/llm_step_time.py \
        --model smollm2-135m --batch 8 --length 64 --steps 5
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

R, ALPHA = 8, 16


def build(model_name: str):
    """(task model with LoRA on q, v; its training driver)."""
    from suite import conformance as C
    from suite.cells import resolve_method
    from suite.methods.api import PrepareContext, Prepared
    from suite.models.loading import load_backbone
    from suite.models.taskmodel import TaskModel
    from suite.registry import Catalog
    from suite.specs.matrix import MethodEntry
    from suite.train.loop import LoopConfig, TrainingDriver
    from suite.train.prepare import prepare_model

    catalog = Catalog.discover()
    preset = catalog.models.get(model_name).spec
    model = TaskModel(load_backbone(preset), 2, preset.pooling, 0)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    entry = MethodEntry(method="lora", params={"r": R, "alpha": ALPHA, "targets": "qv"})
    spec = C.instantiate(resolve_method(catalog, entry))
    context = PrepareContext(preset, 0, torch.device("cpu"))
    model = prepare_model(spec, model, context).prepared.model.train()
    return model, TrainingDriver(Prepared(model=model), LoopConfig(steps=10**6, lr=1e-4))


def step(model, driver, ids: torch.Tensor, autocast: bool) -> None:
    from suite.train.evaluate import token_nll

    cast = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with cast:
        loss = token_nll(model, {"input_ids": ids})
    driver.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    driver.optimizer_step()


def measure(model_name: str, batch: int, length: int, steps: int, warmup: int) -> dict:
    model, driver = build(model_name)
    vocab = model.backbone.config.vocab_size
    ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    times: dict[str, dict[str, list[float]]] = {
        k: {"wall": [], "cpu": []} for k in ("fp32", "bf16")
    }
    for i in range(warmup + steps):
        for name in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
            wall, cpu = time.perf_counter(), time.process_time()
            step(model, driver, ids, autocast=name == "bf16")
            if i >= warmup:
                times[name]["wall"].append(time.perf_counter() - wall)
                times[name]["cpu"].append(time.process_time() - cpu)
    med = {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}
    return {
        "batch": f"{batch} x {length}",
        "steps": steps,
        "threads": torch.get_num_threads(),
        "fp32_s": med["fp32"],
        "bf16_autocast_s": med["bf16"],
        "ratio_fp32_over_bf16": {m: med["fp32"][m] / med["bf16"][m] for m in ("wall", "cpu")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(measure(args.model, args.batch, args.length, args.steps, args.warmup))


if __name__ == "__main__":
    main()
