"""The majority class a continual cell's scores are read against: the task's trivial
predictor on exactly the examples the cell scores (its fixed sample of the test split),
from a hand-made task (no model, no training)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from suite.continual.stages import Stages
from suite.registry import Catalog
from suite.tasks.data import TaskData, baseline_metrics

TRAIN = [0, 0, 0, 1, 2]  # class 0 is the majority
TEST = [0, 1, 1, 1, 2, 0, 1, 1]


def _data() -> TaskData:
    frame = lambda labels: pd.DataFrame({"label": labels})  # noqa: E731
    return TaskData({"train": frame(TRAIN), "validation": frame([0, 1]), "test": frame(TEST)},
                    labels=["a", "b", "c"])  # fmt: skip


@pytest.fixture(scope="module")
def task():
    return Catalog.discover().tasks.get("drug-condition").spec


def test_the_baseline_on_chosen_rows_scores_only_those_rows(task):
    whole = baseline_metrics(task, _data())
    assert whole["test"]["accuracy"] == pytest.approx(2 / 8)
    rows = baseline_metrics(task, _data(), {"test": np.array([0, 5, 1])})
    assert rows["test"]["accuracy"] == pytest.approx(2 / 3)
    assert rows["validation"] == whole["validation"]


def _stages(task, eval_examples: int) -> Stages:
    stage = SimpleNamespace(task=task)
    cell = SimpleNamespace(eval_examples=eval_examples, stage=lambda j: stage)
    setup = SimpleNamespace(
        model=SimpleNamespace(head=None), data=_data(), encoded={"test": [None] * len(TEST)}
    )
    return Stages(cell, [setup])


def test_a_continual_cell_reads_the_majority_class_on_its_own_sample(task):
    sample = _stages(task, 3).sample(0)
    assert list(sample) == list(np.random.default_rng(0).permutation(len(TEST))[:3])
    expected = np.mean([TEST[i] == 0 for i in sample])
    assert _stages(task, 3).trivial(0) == pytest.approx(expected)
    assert _stages(task, 100).sample(0) is None  # the whole split, as `score` uses it
    assert _stages(task, 100).trivial(0) == pytest.approx(2 / 8)
