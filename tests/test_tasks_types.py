"""Every task type end to end on offline tasks built from files this module generates.

Encoder types (classification, pair classification, regression) run on the tiny BERT,
multiple choice and generation on a tiny random Llama (`tiny-llama`, scores meaningless:
the row's note says so), image classification on `digits` with a tiny ViT (`tiny-vit`).
Each goes through the driver, the runner and the store, like `peftbench run`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from suite.registry import Catalog
from tests.support.generated_tasks import WORDS


def _run(plugins: list[Path], tmp_path: Path, models, methods, tasks, extra="") -> list[dict]:
    from suite.driver import plan, run_plan
    from suite.scheduler.local import LocalExecutor
    from suite.store.store import Store

    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        f"name: types\nmodels: {models}\nmethods: {methods}\ntasks: {tasks}\nseeds: [0]\n"
        "budget: {max_steps: 2, batch_size: 4}\n" + extra
    )
    store = Store(tmp_path / "r.duckdb")
    the_plan = plan(Catalog.discover(plugins), str(matrix), store)

    run_plan(the_plan, store, LocalExecutor())
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
