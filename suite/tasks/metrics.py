"""Task metrics, by name. Each takes predictions and gold values as numpy arrays.

Classification metrics take predicted class ids; regression metrics take float
predictions; exact match takes strings or token-id sequences (object arrays). Language
modelling metrics take each sequence's summed negative log-likelihood (nats) as `pred`
and its count of predicted tokens as `gold`, and pool them over the split. Versions live
in the task YAML so a metric change marks old rows stale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold)) if len(gold) else float("nan")


def macro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in gold or predictions."""
    classes = np.union1d(pred, gold)
    scores = []
    for c in classes:
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


def binary_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """F1 of the positive class (label id 1), as GLUE's MRPC/QQP report it."""
    tp = np.sum((pred == 1) & (gold == 1))
    denom = 2 * tp + np.sum((pred == 1) & (gold != 1)) + np.sum((pred != 1) & (gold == 1))
    return float(2 * tp / denom) if denom else 0.0


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation (multi-class form of Gorodkin 2004); 0 when undefined."""
    classes = np.union1d(pred, gold)
    index = {c: i for i, c in enumerate(classes)}
    conf = np.zeros((len(classes), len(classes)))
    for p, g in zip(pred, gold, strict=True):
        conf[index[g], index[p]] += 1
    t, p_ = conf.sum(axis=1), conf.sum(axis=0)
    c, s = np.trace(conf), conf.sum()
    denom = np.sqrt((s * s - p_ @ p_) * (s * s - t @ t))
    return float((c * s - t @ p_) / denom) if denom else 0.0


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    if len(gold) < 2 or np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0
    return float(np.corrcoef(pred.astype(float), gold.astype(float))[0, 1])


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    from scipy.stats import rankdata

    return pearson(rankdata(pred), rankdata(gold))


def mse(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean((pred.astype(float) - gold.astype(float)) ** 2))


def _normalise(value) -> object:
    """Strings compare stripped; token sequences compare as tuples."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(int(v) for v in value)
    return value


def exact_match(pred: np.ndarray, gold: np.ndarray) -> float:
    """Share of predictions equal to the gold answer (strings stripped; token ids as tuples)."""
    if not len(gold):
        return float("nan")
    hits = [_normalise(p) == _normalise(g) for p, g in zip(pred, gold, strict=True)]
    return float(np.mean(hits))


def nll(pred: np.ndarray, gold: np.ndarray) -> float:
    """Mean negative log-likelihood per predicted token (nats), pooled over sequences."""
    tokens = float(np.sum(gold))
    return float(np.sum(pred.astype(np.float64)) / tokens) if tokens else float("nan")


def perplexity(pred: np.ndarray, gold: np.ndarray) -> float:
    """exp(mean NLL per token) over the whole split (not a mean of per-sequence values)."""
    return float(np.exp(nll(pred, gold)))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "f1": binary_f1,
    "mcc": mcc,
    "pearson": pearson,
    "spearman": spearman,
    "mse": mse,
    "exact_match": exact_match,
    "nll": nll,
    "perplexity": perplexity,
}


# The range each metric's values lie in: bootstrap intervals are clipped to it.
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "macro_f1": (0.0, 1.0),
    "f1": (0.0, 1.0),
    "exact_match": (0.0, 1.0),
    "mcc": (-1.0, 1.0),
    "pearson": (-1.0, 1.0),
    "spearman": (-1.0, 1.0),
    "mse": (0.0, float("inf")),
}


def compute(names: list[str], pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    return {name: METRICS[name](pred, gold) for name in names}
