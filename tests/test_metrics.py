"""Each metric against a hand-computed value and, where it has one, scikit-learn's / scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from suite.tasks.metrics import METRICS, compute, exact_match

GOLD = np.array([0, 1, 1, 0, 1, 2])
PRED = np.array([0, 1, 0, 0, 2, 2])


def test_accuracy_by_hand_and_sklearn():
    assert METRICS["accuracy"](PRED, GOLD) == pytest.approx(4 / 6)
    assert METRICS["accuracy"](PRED, GOLD) == pytest.approx(skm.accuracy_score(GOLD, PRED))


def test_macro_f1_by_hand_and_sklearn():
    # class 0: tp 2 fp 1 fn 0 -> 4/5; class 1: tp 1 fp 0 fn 2 -> 2/4; class 2: tp 1 fp 1 fn 0 -> 2/3
    expected = (4 / 5 + 2 / 4 + 2 / 3) / 3
    assert METRICS["macro_f1"](PRED, GOLD) == pytest.approx(expected)
    assert METRICS["macro_f1"](PRED, GOLD) == pytest.approx(
        skm.f1_score(GOLD, PRED, average="macro")
    )


def test_binary_f1_by_hand_and_sklearn():
    gold, pred = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1])
    # tp 2, fp 1, fn 1 -> 2*2 / (4 + 1 + 1)
    assert METRICS["f1"](pred, gold) == pytest.approx(4 / 6)
    assert METRICS["f1"](pred, gold) == pytest.approx(skm.f1_score(gold, pred))
    assert METRICS["f1"](np.zeros(3, int), np.zeros(3, int)) == 0.0  # no positives at all


def test_mcc_by_hand_and_sklearn():
    gold, pred = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])
    # tp 1 tn 2 fp 0 fn 1: (1*2 - 0*1) / sqrt(1 * 2 * 3 * 2) = 2 / sqrt(12)
    assert METRICS["mcc"](pred, gold) == pytest.approx(2 / np.sqrt(12))
    assert METRICS["mcc"](pred, gold) == pytest.approx(skm.matthews_corrcoef(gold, pred))
    assert METRICS["mcc"](PRED, GOLD) == pytest.approx(skm.matthews_corrcoef(GOLD, PRED))
    assert METRICS["mcc"](np.zeros(4, int), gold) == 0.0  # constant prediction: undefined -> 0


def test_pearson_spearman_mse():
    gold = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 3.0, 2.0, 5.0])
    # Pearson by hand: centred gold (-1.5, -.5, .5, 1.5), pred (-1.75, .25, -.75, 2.25)
    num = 1.5 * 1.75 - 0.5 * 0.25 - 0.5 * 0.75 + 1.5 * 2.25
    den = np.sqrt(5.0 * (1.75**2 + 0.25**2 + 0.75**2 + 2.25**2))
    assert METRICS["pearson"](pred, gold) == pytest.approx(num / den)
    assert METRICS["pearson"](pred, gold) == pytest.approx(stats.pearsonr(pred, gold)[0])
    # Spearman: ranks (1, 3, 2, 4) vs (1, 2, 3, 4): 1 - 6 * 2 / (4 * 15) = 0.8
    assert METRICS["spearman"](pred, gold) == pytest.approx(0.8)
    assert METRICS["spearman"](pred, gold) == pytest.approx(stats.spearmanr(pred, gold)[0])
    assert METRICS["mse"](pred, gold) == pytest.approx((0 + 1 + 1 + 1) / 4)
    assert METRICS["mse"](pred, gold) == pytest.approx(skm.mean_squared_error(gold, pred))


def test_exact_match_strings_and_token_ids():
    assert exact_match(np.array([" 42", "7", "x"]), np.array(["42", "8", "x "])) == pytest.approx(
        2 / 3
    )
    pred = np.empty(3, dtype=object)
    pred[:] = [(5, 6), (7,), ()]
    gold = np.empty(3, dtype=object)
    gold[:] = [(5, 6), (7, 8), ()]
    assert exact_match(pred, gold) == pytest.approx(2 / 3)


def test_compute_names_every_metric():
    out = compute(["accuracy", "macro_f1", "mcc"], PRED, GOLD)
    assert set(out) == {"accuracy", "macro_f1", "mcc"}
