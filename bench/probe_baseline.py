"""Frozen-feature probe baseline of a classification task: mean-pooled backbone features
(the model preset's own tokenizer, the task's max_length) and a logistic regression.

The regularisation C is chosen on the task's validation split from a small grid; the
table reports validation and test accuracy with that C, beside the majority baseline.
This is the reference a task's description quotes ("a frozen probe reaches ..."): a
fine-tuning method that does not beat it has not used its trainable parameters.

    PYTHONPATH=$PWD .venv/bin/python bench/probe_baseline.py rotten-tomatoes python-docs-section
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from suite.registry import Catalog
from suite.tasks.data import baseline_metrics, load_task_data

GRID = (0.1, 1.0, 10.0)


@torch.no_grad()
def embed(texts: list[str], tokenizer, model, max_length: int, batch: int = 128) -> np.ndarray:
    """Mean of the last hidden states over the non-padding tokens."""
    out = []
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start : start + batch], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")  # fmt: skip
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * mask).sum(1) / mask.sum(1)).float().numpy())
    return np.concatenate(out)


def probe(task_name: str, model_name: str, catalog: Catalog) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    from suite.models.loading import load_backbone, load_tokenizer

    entry = catalog.tasks.get(task_name)
    task = entry.spec
    data = load_task_data(task, entry.folder)
    preset = catalog.models.get(model_name).spec
    tokenizer, model = load_tokenizer(preset), load_backbone(preset).eval()
    text = task.text_fields[0]
    feats = {s: embed(list(f[text].astype(str)), tokenizer, model, task.max_length)
             for s, f in data.splits.items()}  # fmt: skip
    gold = {s: f["label"].to_numpy() for s, f in data.splits.items()}
    fits = {c: LogisticRegression(C=c, max_iter=3000).fit(feats["train"], gold["train"])
            for c in GRID}  # fmt: skip
    val = {c: float((m.predict(feats["validation"]) == gold["validation"]).mean())
           for c, m in fits.items()}  # fmt: skip
    best = max(GRID, key=lambda c: (val[c], -c))
    test = float((fits[best].predict(feats["test"]) == gold["test"]).mean())
    majority = baseline_metrics(task, data)["test"]["accuracy"]
    sizes = {s: len(f) for s, f in data.splits.items()}
    return {"sizes": sizes, "C": best, "validation": val[best], "test": test,
            "majority_test": majority}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="+")
    parser.add_argument("--model", default="minilm-l6")
    args = parser.parse_args()
    torch.manual_seed(0)
    catalog = Catalog.discover()
    for name in args.tasks:
        start = time.perf_counter()
        result = probe(name, args.model, catalog)
        print(f"{name} x {args.model}: {result} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
