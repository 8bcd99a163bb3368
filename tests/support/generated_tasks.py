"""Offline tasks of every text type, generated into files (tests only): classification,
pair classification, regression, multiple choice and generation, each in a different file
format, so the loaders and the task types run end to end without a hub."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pandas as pd

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]


def _rows(n: int, seed: int, make) -> list[dict]:
    rng = random.Random(seed)
    return [make(rng) for _ in range(n)]


def _single(rng):
    words = rng.choices(WORDS, k=5)
    return {"text": " ".join(words), "label": "pos" if "alpha" in words else "neg"}


def _pair(rng):
    a = " ".join(rng.choices(WORDS, k=4))
    b = a if rng.random() < 0.5 else " ".join(rng.choices(WORDS, k=4))
    return {"first": a, "second": b, "label": int(a == b)}


def _regression(rng):
    k = rng.randint(0, 4)
    return {"text": " ".join(["up"] * k + rng.choices(WORDS, k=3)), "score": float(k)}


def _choice(rng):
    word = rng.choice(WORDS)
    # 3 or 4 choices: examples with different numbers of choices share batches.
    options = rng.sample([w for w in WORDS if w != word], rng.choice([2, 3])) + [word]
    rng.shuffle(options)
    return {"question": f"which word is {word}?", "options": json.dumps(options),
            "answer": options.index(word)}  # fmt: skip


def _generation(rng):
    word = rng.choice(WORDS)
    return {"prompt": f"repeat the word {word}", "target": f"#### {word}"}


def _write(folder: Path, name: str, make, fmt: str, n_train=48, n_test=16):
    folder.mkdir(parents=True, exist_ok=True)
    writers = {
        "csv": lambda f, p: f.to_csv(p, index=False),
        "tsv": lambda f, p: f.to_csv(p, sep="\t", index=False),
        "jsonl": lambda f, p: f.to_json(p, orient="records", lines=True),
        "json": lambda f, p: f.to_json(p, orient="records"),
        "parquet": lambda f, p: f.to_parquet(p),
    }
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        writers[fmt](pd.DataFrame(_rows(n, seed, make)), folder / f"{split}.{fmt}")


TASKS = {
    "gen-single": (
        "csv",
        _single,
        """\
        type: classification
        text_fields: [text]
        label_field: label
        metrics:
          - {name: accuracy, version: 1}
          - {name: f1, version: 1}
          - {name: mcc, version: 1}
        primary_metric: accuracy""",
    ),
    "gen-pair": (
        "tsv",
        _pair,
        """\
        type: pair-classification
        text_fields: [first, second]
        label_field: label
        metrics: [{name: f1, version: 1}, {name: accuracy, version: 1}]
        primary_metric: f1""",
    ),
    "gen-regression": (
        "parquet",
        _regression,
        """\
        type: regression
        text_fields: [text]
        label_field: score
        baseline: mean
        metrics:
          - {name: pearson, version: 1}
          - {name: spearman, version: 1}
          - {name: mse, higher_is_better: false, version: 1}
        primary_metric: spearman""",
    ),
    "gen-choice": (
        "jsonl",
        _choice,
        """\
        type: multiple-choice
        text_fields: [question]
        choices_field: options
        label_field: answer
        metrics: [{name: accuracy, version: 1}]
        primary_metric: accuracy""",
    ),
    "gen-generation": (
        "json",
        _generation,
        """\
        type: generation
        text_fields: [prompt]
        prompt_template: "{prompt}:"
        label_field: target
        answer_pattern: '#### (\\w+)'
        max_new_tokens: 4
        metrics: [{name: exact_match, version: 1}]
        primary_metric: exact_match""",
    ),
}


def write_generated_tasks(root: Path) -> Path:
    """A plugin folder with one generated task per text type, in a different file format each."""
    for name, (fmt, make, body) in TASKS.items():
        folder = root / "tasks" / name
        _write(folder, name, make, fmt)
        header = f"""\
            name: {name}
            data:
              loader: files
              data_files: {{train: train.{fmt}, test: test.{fmt}}}
              validation: {{from_split: train, fraction: 0.25, seed: 0, stratify: false}}
            max_length: 32
            eval_batch_size: 8
            """
        (folder / "task.yaml").write_text(textwrap.dedent(header) + textwrap.dedent(body) + "\n")
    return root
