"""Every task type end to end on offline tasks built from files this module generates.

Encoder types (classification, pair classification, regression) run on the tiny BERT,
multiple choice and generation on a tiny random Llama (`tiny-llama`, scores meaningless:
the row's note says so), image classification on `digits` with a tiny ViT (`tiny-vit`).
Each goes through the driver, the runner and the store, like `peftbench run`.
"""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from suite.registry import Catalog

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


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A plugin folder with one generated task per text type, in a different file format each."""
    root = tmp_path_factory.mktemp("generated")
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


def _run(plugins: list[Path], tmp_path: Path, models, methods, tasks, extra="") -> list[dict]:
    from suite.driver import plan, run_plan
    from suite.store.store import Store
    from suite.train.runner import run_cell

    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        f"name: types\nmodels: {models}\nmethods: {methods}\ntasks: {tasks}\nseeds: [0]\n"
        "budget: {max_steps: 2, batch_size: 4}\n" + extra
    )
    store = Store(tmp_path / "r.duckdb")
    the_plan = plan(Catalog.discover(plugins), str(matrix), store)

    def execute(cells, on_result):
        for cell in cells:
            on_result(cell, run_cell(cell))

    run_plan(the_plan, store, execute)
    con = duckdb.connect(str(store.path), read_only=True)
    try:
        frame = con.execute("SELECT * FROM results ORDER BY task, method").df()
    finally:
        con.close()
    return frame.to_dict("records")


def test_encoder_task_types_end_to_end(generated, tiny_plugins, tmp_path):
    rows = _run(
        [generated, tiny_plugins], tmp_path, "[tiny-bert]", "[head, lora]",
        "[gen-single, gen-pair, gen-regression]",
    )  # fmt: skip
    assert len(rows) == 6
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["test_primary"] is not None and row["baseline_test_primary"] is not None
    by_task = {r["task"]: r for r in rows}
    assert by_task["gen-single"]["task_type"] == "classification"
    assert -1.0 <= by_task["gen-single"]["test_mcc"] <= 1.0
    assert 0.0 <= by_task["gen-pair"]["test_f1"] <= 1.0
    assert by_task["gen-regression"]["test_mse"] >= 0.0
    assert by_task["gen-regression"]["higher_is_better"]  # spearman


def test_causal_lm_choice_and_generation_end_to_end(generated, tmp_path):
    rows = _run([generated], tmp_path, "[tiny-llama]", "[lora]", "[gen-choice, gen-generation]")
    assert [r["task"] for r in rows] == ["gen-choice", "gen-generation"]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert "meaningless" in row["note"]  # the row says the score means nothing
        assert row["trainable_params"] > 0 and row["latency_unmerged_s"] > 0
    choice, gen = rows
    assert 0.0 <= choice["test_accuracy"] <= 1.0 and choice["task_type"] == "multiple-choice"
    assert 0.0 <= gen["test_exact_match"] <= 1.0 and gen["task_type"] == "generation"
    assert gen["merge_max_abs_diff"] < 1e-3  # merged LoRA scores the same answers


def test_digits_with_a_tiny_vit(tmp_path):
    rows = _run([], tmp_path, "[tiny-vit]", "[head, lora]", "[digits]")
    assert [r["method"] for r in rows] == ["head", "lora"]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["task_type"] == "image-classification"
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["baseline_test_primary"] == pytest.approx(0.0954, abs=1e-3)


def test_forgetting_is_measured_for_causal_lms(generated, tiny_plugins, tmp_path):
    texts = tmp_path / "reference.jsonl"
    pd.DataFrame({"text": [f"{w} is a greek letter" for w in WORDS]}).to_json(
        texts, orient="records", lines=True
    )
    extra = f"reference: {{data_files: {texts}, max_texts: 6}}\n"
    rows = _run(
        [generated, tiny_plugins], tmp_path, "[tiny-llama, tiny-bert]", "[lora]",
        "[gen-generation, gen-single]", extra,
    )  # fmt: skip
    cells = {(r["model"], r["task"]): r for r in rows}
    llm, bert = cells["tiny-llama", "gen-generation"], cells["tiny-bert", "gen-single"]
    assert llm["status"] == "ok" and bert["status"] == "ok"
    assert llm["reference_loss_before"] > 0 and llm["reference_loss_after"] > 0
    assert llm["forgetting_delta_loss"] == pytest.approx(
        llm["reference_loss_after"] - llm["reference_loss_before"]
    )
    assert pd.isna(bert["forgetting_delta_loss"])  # encoders: no LM loss
