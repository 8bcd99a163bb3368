"""Task metrics on bootstrap resamples given as example counts, vectorised over replicates.

A bootstrap replicate that draws example i `w[i]` times has the metric of the data with
example i repeated `w[i]` times. Given the counts of many replicates at once, a (B, n)
matrix `W`, `weighted_metric` returns the metric of every replicate (B,) from weighted
sums (a matrix product) instead of B calls on gathered arrays: this is what makes tens
of thousands of replicates affordable at write time. Every function here equals the
metric in suite/tasks/metrics.py on the repeated data (tests/test_resample.py checks
each against it); a metric without a weighted form falls back to those calls.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from suite.tasks.metrics import METRICS, _normalise


def correct(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per example: does the prediction equal the gold answer (as exact_match compares)."""
    if pred.dtype != object and gold.dtype != object:  # numbers: compare at once
        return np.asarray(pred == gold)
    return np.asarray([_normalise(p) == _normalise(g) for p, g in zip(pred, gold, strict=True)])


# A linear form: per-example columns (n, k) whose weighted sums (B, k), with the
# replicates' example counts (B,), give the metric. Many metrics and seeds then share
# one matrix product with the counts.
Finish = Callable[[np.ndarray, np.ndarray], np.ndarray]
Linear = tuple[np.ndarray, Finish]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _mean_form(values: np.ndarray) -> Linear:
    return values[:, None].astype(float), lambda s, count: s[:, 0] / count


def _accuracy(pred, gold) -> Linear:
    return _mean_form(correct(pred, gold).astype(float))


def _mse(pred, gold) -> Linear:
    return _mean_form((pred.astype(float) - gold.astype(float)) ** 2)


def _nll(pred, gold) -> Linear:
    cols = np.stack([pred.astype(float), gold.astype(float)], axis=1)
    return cols, lambda s, count: _ratio(s[:, 0], s[:, 1])


def _perplexity(pred, gold) -> Linear:
    cols, finish = _nll(pred, gold)
    return cols, lambda s, count: np.exp(finish(s, count))


def _confusion_form(pred, gold, from_confusion: Callable[[np.ndarray], np.ndarray]) -> Linear:
    """Columns: one indicator per (gold class, predicted class) cell."""
    classes, codes = np.unique(np.r_[gold, pred], return_inverse=True)
    k, n = len(classes), len(gold)
    onehot = np.zeros((n, k * k))
    onehot[np.arange(n), codes[:n] * k + codes[n:]] = 1.0
    return onehot, lambda s, count: from_confusion(s.reshape(-1, k, k))


def _macro_f1_of(conf: np.ndarray) -> np.ndarray:
    tp = np.diagonal(conf, axis1=1, axis2=2)
    denom = conf.sum(axis=2) + conf.sum(axis=1)  # 2tp + fp + fn
    present = denom > 0  # the classes in this replicate's gold or predictions
    f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
    n_present = present.sum(axis=1)
    return _ratio(f1.sum(axis=1), n_present.astype(float))


def _mcc_of(conf: np.ndarray) -> np.ndarray:
    t, p = conf.sum(axis=2), conf.sum(axis=1)
    c, s = np.trace(conf, axis1=1, axis2=2), conf.sum(axis=(1, 2))
    denom = np.sqrt((s * s - (p * p).sum(1)) * (s * s - (t * t).sum(1)))
    return np.nan_to_num(_ratio(c * s - (t * p).sum(1), denom), nan=0.0)


def _binary_f1(pred, gold) -> Linear:
    p, g = pred == 1, gold == 1
    cols = np.stack([p & g, p & ~g, ~p & g], axis=1).astype(float)  # tp, fp, fn
    return cols, lambda s, count: np.nan_to_num(
        _ratio(2 * s[:, 0], 2 * s[:, 0] + s[:, 1] + s[:, 2]), nan=0.0
    )


def _correlation(x: np.ndarray, y: np.ndarray, sums: list[np.ndarray], count) -> np.ndarray:
    """Weighted Pearson correlation from the weighted sums of x, y, xx, yy, xy (x and y
    centred first, so the moments cancel little); 0 where either is constant."""
    sx, sy, sxx, syy, sxy = (v / count for v in sums)
    vx, vy, cov = sxx - sx * sx, syy - sy * sy, sxy - sx * sy
    # Constant up to rounding (relative to the values' scale), not only exactly constant.
    ok = (vx > 1e-20 * max(1.0, float(np.max(x * x)))) & (
        vy > 1e-20 * max(1.0, float(np.max(y * y)))
    ) & (count >= 2)  # fmt: skip
    r = cov / np.sqrt(np.where(ok, vx * vy, 1.0))
    return np.where(ok, np.clip(r, -1.0, 1.0), 0.0)


def _pearson(pred, gold) -> Linear:
    x, y = pred.astype(float), gold.astype(float)
    x, y = x - x.mean(), y - y.mean()
    cols = np.stack([x, y, x * x, y * y, x * y], axis=1)
    return cols, lambda s, count: _correlation(x, y, list(s.T), count)


def _weighted_ranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B, n) average ranks (1-based, ties averaged, as scipy's rankdata) of each example
    in each replicate's multiset, where example i appears w[b, i] times."""
    order = np.argsort(values, kind="stable")
    _, starts, inverse = np.unique(values[order], return_index=True, return_inverse=True)
    per_value = np.take(w, order, axis=1)  # np.take: much faster than w[:, order]
    if len(starts) < len(values):  # ties: one column per distinct value
        per_value = np.add.reduceat(per_value, starts, axis=1)
    average = np.cumsum(per_value, axis=1) - (per_value - 1) / 2
    return np.take(average, inverse[np.argsort(order)], axis=1)  # back to example order


def _spearman(pred, gold, w):
    """Not linear: each replicate ranks its own multiset. In float32 (5 times faster;
    the correlation moves by about 1e-6, far inside any interval's resolution)."""
    w = w.astype(np.float32)
    x, y = _weighted_ranks(pred, w), _weighted_ranks(gold, w)
    x, y = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    sums = [np.einsum("bn,bn->b", w, v).astype(float) for v in (x, y, x * x, y * y, x * y)]
    return _correlation(x, y, sums, w.sum(axis=1).astype(float))


LINEAR: dict[str, Callable[[np.ndarray, np.ndarray], Linear]] = {
    "accuracy": _accuracy,
    "exact_match": _accuracy,
    "mse": _mse,
    "nll": _nll,
    "perplexity": _perplexity,
    "macro_f1": lambda p, g: _confusion_form(p, g, _macro_f1_of),
    "mcc": lambda p, g: _confusion_form(p, g, _mcc_of),
    "f1": _binary_f1,
    "pearson": _pearson,
}


def linear_form(metric: str, pred: np.ndarray, gold: np.ndarray) -> Linear | None:
    """The metric's columns and finisher, or None where it has no linear form."""
    return LINEAR[metric](pred, gold) if metric in LINEAR else None


def weighted_metric(metric: str, pred: np.ndarray, gold: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The metric of every replicate (B,), replicate b repeating example i w[b, i] times."""
    form = linear_form(metric, pred, gold)
    if form is not None:
        cols, finish = form
        return finish(w @ cols, w.sum(axis=1))
    if metric == "spearman":
        return _spearman(pred, gold, w)
    fn, index = METRICS[metric], np.arange(len(gold))
    out = np.empty(w.shape[0])
    for b, counts in enumerate(w.astype(int)):
        idx = np.repeat(index, counts)
        out[b] = fn(pred[idx], gold[idx])
    return out
