"""Scoring one-token answer choices from one forward pass of the shared prompt against the
per-choice path (one prompt + choice sequence per choice), on a causal-LM preset and a
multiple-choice task: the CPU-time ratio (old / new) and the largest score difference.

CPU seconds of this process (time.process_time), not wall time, so a loaded machine
slows both paths alike; run it on one thread (the ratio is per core):

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python bench/shared_prompt_speed.py \
        rotten-tomatoes-mc --model smollm2-135m --examples 64 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import numpy as np
import torch

from suite.registry import Catalog
from suite.tasks import encoding
from suite.tasks.data import load_task_data
from suite.tasks.types import task_type


def _timed_scores(model, split, batch_size: int, pad: int) -> tuple[float, torch.Tensor]:
    batches = [
        encoding.collate_choices(split, np.arange(i, min(i + batch_size, len(split))), pad)
        for i in range(0, len(split), batch_size)
    ]
    start = time.process_time()
    with torch.inference_mode():
        scores = torch.cat([model(**b) for b in batches])
    return time.process_time() - start, scores


def compare(task_name: str, model_name: str, examples: int, repeats: int) -> dict:
    from suite.models.loading import load_backbone, load_tokenizer
    from suite.models.taskmodel import TaskModel

    catalog = Catalog.discover()
    entry = catalog.tasks.get(task_name)
    task, preset = entry.spec, catalog.models.get(model_name).spec
    encode = task_type(task).function("encoder")
    tokenizer = load_tokenizer(preset)
    frame = load_task_data(task, entry.folder).splits["validation"].head(examples)
    fast = encode(task, frame, tokenizer)
    with mock.patch.object(encoding, "shared_prompts", lambda *a: None):
        general = encode(task, frame, tokenizer)
    if "choice_tokens" not in fast.extra:
        raise SystemExit(f"{task_name}'s choices are not one token each with {model_name}")
    model = TaskModel(load_backbone(preset).eval(), 2, preset.pooling, 0)
    pad = tokenizer.pad_token_id or 0
    old, new = [], []
    for _ in range(repeats):  # alternated, so a change in load hits both
        seconds, slow = _timed_scores(model, general, task.eval_batch_size, pad)
        old.append(seconds)
        seconds, quick = _timed_scores(model, fast, task.eval_batch_size, pad)
        new.append(seconds)
    return {
        "examples": len(frame),
        "old_cpu_s": statistics.median(old),
        "new_cpu_s": statistics.median(new),
        "ratio_old_over_new": statistics.median(old) / statistics.median(new),
        "max_abs_score_diff": float((slow - quick).abs().max()),
        "same_predictions": bool((slow.argmax(-1) == quick.argmax(-1)).all()),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(compare(args.task, args.model, args.examples, args.repeats))


if __name__ == "__main__":
    main()
