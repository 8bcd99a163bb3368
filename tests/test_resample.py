"""Metrics on resamples given as example counts (suite/resample.py) equal the metrics of
suite/tasks/metrics.py on the repeated data, for every metric, with ties and absent
classes."""

from __future__ import annotations

import numpy as np
import pytest

from suite.resample import weighted_metric
from suite.tasks.metrics import METRICS


def _data(metric: str, rng: np.random.Generator, n: int):
    if metric in ("pearson", "spearman", "mse"):
        gold = np.round(rng.normal(size=n), 1)  # ties, as STS-B's 0.2 steps
        return gold + rng.normal(scale=0.7, size=n), gold
    if metric in ("nll", "perplexity"):
        tokens = rng.integers(1, 30, n).astype(float)
        return tokens * rng.uniform(1, 4, n), tokens
    if metric == "exact_match":
        gold = np.array([f"a{i % 7}" for i in range(n)], dtype=object)
        pred = np.array([g if rng.random() < 0.6 else " a0 " for g in gold], dtype=object)
        return pred, gold
    gold = rng.integers(0, 3, n)
    return np.where(rng.random(n) < 0.6, gold, rng.integers(0, 3, n)), gold


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_each_metric_on_counts_equals_the_metric_on_repeated_examples(metric):
    rng = np.random.default_rng(7)
    n = 40
    pred, gold = _data(metric, rng, n)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(30)])
    counts[0] = 0
    counts[0, :3] = [5, 20, 15]  # few distinct examples: classes absent, many ties
    got = weighted_metric(metric, pred, gold, counts.astype(float))
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(n), row)
        want = METRICS[metric](pred[idx], gold[idx])
        assert got[b] == pytest.approx(want, abs=1e-5), (metric, b)
