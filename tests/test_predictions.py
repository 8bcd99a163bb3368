"""Every cell stores its per-example predictions with its result; the task's metrics
recomputed from the stored predictions equal the stored metrics, for every task type."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from suite.tasks.metrics import compute
from tests.test_tasks_types import _run


def _recomputed(con, result_id: str, split: str, names: list[str]) -> dict[str, float]:
    frame = con.execute(
        "SELECT example, pred_num, pred_text, gold_num, gold_text FROM predictions "
        "WHERE result_id = ? AND split = ? ORDER BY example",
        [result_id, split],
    ).df()
    assert list(frame["example"]) == list(range(len(frame)))  # one row per example, in order
    text = frame["gold_text"].notna().any()
    pred = frame["pred_text" if text else "pred_num"].to_numpy()
    gold = frame["gold_text" if text else "gold_num"].to_numpy()
    if text:
        pred, gold = pred.astype(object), gold.astype(object)
    elif np.allclose(gold, np.round(gold)) and "mse" not in names:
        pred, gold = pred.astype(int), gold.astype(int)  # class ids and choice indices
    return compute(names, pred, gold)


def _check_rows(db, tasks: set[str]) -> None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT result_id, task FROM cell_runs WHERE status = 'ok' ORDER BY task"
        ).fetchall()
        assert {t for _, t in rows} == tasks
        for result_id, task in rows:
            stored = dict(
                con.execute(
                    "SELECT split || '/' || metric, value FROM metrics WHERE result_id = ?",
                    [result_id],
                ).fetchall()
            )
            for split in ("validation", "test"):
                names = [k.split("/")[1] for k in stored if k.startswith(split + "/")]
                again = _recomputed(con, result_id, split, names)
                for name in names:
                    assert again[name] == pytest.approx(stored[f"{split}/{name}"], abs=1e-12), (
                        task, split, name,
                    )  # fmt: skip
    finally:
        con.close()


def test_encoder_types_store_predictions_that_give_back_their_metrics(
    generated, tiny_plugins, tmp_path
):
    _run([generated, tiny_plugins], tmp_path, "[tiny-bert]", "[lora]",
         "[gen-single, gen-pair, gen-regression]")  # fmt: skip
    _check_rows(tmp_path / "r.duckdb", {"gen-single", "gen-pair", "gen-regression"})


def test_causal_lm_types_store_predictions_that_give_back_their_metrics(generated, tmp_path):
    _run([generated], tmp_path, "[tiny-llama]", "[lora]", "[gen-choice, gen-generation]")
    _check_rows(tmp_path / "r.duckdb", {"gen-choice", "gen-generation"})
