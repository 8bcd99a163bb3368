"""Zero-shot score of a causal-LM preset on a multiple-choice task: the untrained base
through the suite's own path (the task type's encoder and collator, the TaskModel's
causal-LM head, the task's metrics), as a cell evaluates it before any training step.

This is the baseline an LLM method must beat (what a fine-tuning method adds to the
model's prior); task descriptions and docs/llm.md quote it. Accuracy comes with a 95%
normal-approximation binomial interval over the split's items (1.96 sqrt(p(1-p)/n));
perplexity with none (it pools tokens, not items).

    PYTHONPATH=$PWD .venv/bin/python bench/zero_shot_baseline.py rotten-tomatoes-mc \
        --model smollm2-135m --splits validation test
    PYTHONPATH=$PWD .venv/bin/python bench/zero_shot_baseline.py python-docs-adapt \
        --model smollm2-135m --reference-of llm
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from suite.registry import Catalog
from suite.specs.matrix import ReferenceSpec
from suite.tasks.data import baseline_metrics, load_task_data
from suite.tasks.forgetting import ReferenceProbe
from suite.tasks.types import task_type


def zero_shot(
    task_name: str,
    model_name: str,
    splits: list[str],
    limit: int | None = None,
    catalog: Catalog | None = None,
    on_split=None,
    reference: ReferenceSpec | None = None,
    autocast: str | None = None,
) -> dict[str, dict[str, float]]:
    """{split: metrics (+ n, interval, seconds)} of the preset's untrained base; `limit`
    scores only each split's first examples; `on_split(split, metrics)` is told each
    split's as soon as it is scored (a long run keeps what it finished); with a
    `reference`, also the base's loss on those texts (a cell's reference_loss_before);
    `autocast` ("bf16") scores under autocast, as a cell with that budget evaluates."""
    from suite.models.loading import load_backbone, load_tokenizer
    from suite.models.taskmodel import TaskModel
    from suite.train.batches import eval_batches
    from suite.train.evaluate import predict, score
    from suite.train.precision import autocast_context

    catalog = catalog or Catalog.discover()
    entry = catalog.tasks.get(task_name)
    task, preset = entry.spec, catalog.models.get(model_name).spec
    kind = task_type(task)
    tokenizer = load_tokenizer(preset)
    data = load_task_data(task, entry.folder)
    model = TaskModel(load_backbone(preset).eval(), data.num_outputs, preset.pooling, 0)
    out = {}
    for split in splits:
        start, cpu = time.perf_counter(), time.process_time()
        frame = data.splits[split] if limit is None else data.splits[split].head(limit)
        encoded = kind.function("encoder")(task, frame, tokenizer)
        pad = tokenizer.pad_token_id or 0
        batches = eval_batches(encoded, task.eval_batch_size, pad, kind.function("collator"))
        with autocast_context(torch.device("cpu"), autocast):
            metrics = score(task, predict(model, batches, task, tokenizer))
        n = len(frame)
        half = item_interval(task, metrics[task.primary_metric], n)
        out[split] = {**metrics, "n": n, "interval": half, "seconds": time.perf_counter() - start,
                      "cpu_seconds": time.process_time() - cpu}  # fmt: skip
        if on_split is not None:
            on_split(split, out[split])
    out["majority"] = baseline_metrics(task, data).get("test", {})
    if reference is not None:  # forgetting's "before": the base's loss on the reference texts
        probe = ReferenceProbe.for_reference(reference, tokenizer, torch.device("cpu"))
        texts = sum(len(b["input_ids"]) for b in probe.batches)
        out["reference_loss"] = {"nll": probe.loss(model), "texts": texts}
    return out


def item_interval(task, value: float, n: int) -> float | None:
    """Half-width of the 95% binomial interval when the primary metric is a proportion of
    the split's items (a class or a choice per item); None for other metrics (perplexity
    pools tokens, a regression's error is not a proportion)."""
    if task_type(task).label_kind not in ("class", "index"):
        return None
    return 1.96 * math.sqrt(max(value * (1 - value), 0.0) / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"])
    parser.add_argument("--limit", type=int, default=None, help="first N examples per split")
    parser.add_argument(
        "--reference-of",
        metavar="MATRIX",
        default=None,
        help="also the base's loss on this matrix's reference texts",
    )
    parser.add_argument("--autocast", choices=["bf16"], default=None,
                        help="score under bf16 autocast (default: the weights' dtype)")  # fmt: skip
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()

    def show(split, metrics):
        print(f"{args.task} x {args.model} zero-shot {split}: {metrics}", flush=True)

    catalog = Catalog.discover()
    reference = (
        catalog.matrices.get(args.reference_of).spec.reference if args.reference_of else None
    )
    result = zero_shot(
        args.task, args.model, args.splits, args.limit, catalog, show, reference, args.autocast
    )
    show("majority", result["majority"])
    if reference is not None:
        show(f"reference texts of {args.reference_of}", result["reference_loss"])
    print(f"({time.perf_counter() - start:.0f} s, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
