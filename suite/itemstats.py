"""Item-level statistics: every comparison uses the test examples, not only seed means.

A method's score on a task is the mean over seeds of its metric on the test split. Its
interval and its comparison with the matrix's baseline method come from one bootstrap:

- hierarchical (3 seeds or more): resample seeds, then examples within each resampled
  seed, recompute the metric and average over the resampled seeds;
- over examples only (fewer than 3 seeds: two seeds say little about seed variance):
  resample examples within every seed and average.

A percentile interval of resampled metric values never leaves the metric's range, which
is clipped once more for safety. A comparison resamples the same seeds and examples for
both methods (paired) and reports a two-sided bootstrap p-value; where the metric is an
accuracy (exact match included) McNemar's exact test on the discordant pairs (pooled over
the common seeds) is reported too. Holm's step-down correction runs over the methods
compared with one baseline. Seeds and examples are drawn from a generator seeded by the
group, so the numbers are reproducible.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from suite.tasks.metrics import METRIC_RANGES, METRICS

N_BOOT = 1000
HIERARCHICAL_MIN_SEEDS = 3
LEVEL = 0.95
# Metrics that are a mean of per-example correctness: fast path and McNemar.
CORRECTNESS_METRICS = frozenset({"accuracy", "exact_match"})


@dataclass(frozen=True)
class Outcomes:
    """One method's test predictions, per seed, aligned by example (same ids per seed)."""

    metric: str
    pred: dict[int, np.ndarray]
    gold: dict[int, np.ndarray]

    @property
    def seeds(self) -> list[int]:
        return sorted(self.pred)

    def value(self) -> float:
        """The reported score: the metric per seed, averaged over seeds."""
        return float(
            np.mean([metric_of(self.metric)(self.pred[s], self.gold[s]) for s in self.seeds])
        )

    def correct(self, seed: int) -> np.ndarray:
        return np.asarray(
            [_same(p, g) for p, g in zip(self.pred[seed], self.gold[seed], strict=True)]
        )


def _same(p, g) -> bool:
    if isinstance(g, str) or isinstance(p, str):
        return str(p).strip() == str(g).strip()
    return bool(p == g)


def metric_of(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    return METRICS[name]


def rng_for(*key: str) -> np.random.Generator:
    digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:16]
    return np.random.default_rng(int(digest, 16))


@dataclass(frozen=True)
class Draws:
    """Which seeds and examples each bootstrap replicate uses (shared by paired methods)."""

    seeds: np.ndarray  # (B, S): indices into the seed list
    examples: np.ndarray  # (B, S, n): example indices for each drawn seed
    hierarchical: bool


def draws(n_seeds: int, n_examples: int, rng: np.random.Generator, n_boot: int = N_BOOT) -> Draws:
    hierarchical = n_seeds >= HIERARCHICAL_MIN_SEEDS
    if hierarchical:
        seeds = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    else:
        seeds = np.broadcast_to(np.arange(n_seeds), (n_boot, n_seeds))
    examples = rng.integers(0, n_examples, size=(n_boot, n_seeds, n_examples))
    return Draws(seeds, examples, hierarchical)


def replicates(outcomes: Outcomes, d: Draws, seeds: list[int]) -> np.ndarray:
    """The metric, averaged over the drawn seeds, for every bootstrap replicate (B,)."""
    if outcomes.metric in CORRECTNESS_METRICS:
        correct = np.stack([outcomes.correct(s) for s in seeds]).astype(float)  # (S, n)
        picked = correct[d.seeds[..., None], d.examples]  # (B, S, n)
        return picked.mean(axis=(1, 2))
    fn = metric_of(outcomes.metric)
    preds = [outcomes.pred[s] for s in seeds]
    golds = [outcomes.gold[s] for s in seeds]
    out = np.empty(d.seeds.shape[0])
    for b in range(d.seeds.shape[0]):
        values = [
            fn(preds[s][idx], golds[s][idx])
            for s, idx in zip(d.seeds[b], d.examples[b], strict=True)
        ]
        out[b] = np.mean(values)
    return out


def clip(value: float, metric: str) -> float:
    low, high = METRIC_RANGES.get(metric, (-math.inf, math.inf))
    return float(min(max(value, low), high))


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    kind: str  # "seeds+examples" | "examples"
    n_seeds: int
    n_examples: int
    samples: np.ndarray  # the bootstrap replicates (for Pareto-under-noise)


def interval(outcomes: Outcomes, key: str, n_boot: int = N_BOOT) -> Interval:
    """The method's score with its percentile bootstrap interval, inside the metric's range."""
    seeds = outcomes.seeds
    n = len(outcomes.gold[seeds[0]])
    d = draws(len(seeds), n, rng_for("interval", key), n_boot)
    samples = replicates(outcomes, d, seeds)
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    m = outcomes.metric
    kind = "seeds+examples" if d.hierarchical else "examples"
    return Interval(outcomes.value(), clip(low, m), clip(high, m), kind, len(seeds), n, samples)


@dataclass(frozen=True)
class Comparison:
    """A method against the baseline method on their common seeds and examples."""

    n_seeds: int
    n_examples: int
    diff: float  # method minus baseline, in the metric's units
    diff_low: float
    diff_high: float
    p_boot: float
    kind: str
    mcnemar_b: int | None = None  # method right, baseline wrong (pooled over seeds)
    mcnemar_c: int | None = None  # method wrong, baseline right
    p_mcnemar: float | None = None


def compare(
    method: Outcomes, baseline: Outcomes, key: str, n_boot: int = N_BOOT
) -> Comparison | None:
    """Paired bootstrap (and McNemar for accuracies) over the common seeds; None without
    common seeds or with examples that do not line up."""
    seeds = sorted(set(method.seeds) & set(baseline.seeds))
    if not seeds:
        return None
    n = len(method.gold[seeds[0]])
    if any(len(x.gold[s]) != n for x in (method, baseline) for s in seeds):
        return None
    d = draws(len(seeds), n, rng_for("paired", key), n_boot)
    diffs = replicates(method, d, seeds) - replicates(baseline, d, seeds)
    observed = float(np.mean([
        metric_of(method.metric)(method.pred[s], method.gold[s])
        - metric_of(method.metric)(baseline.pred[s], baseline.gold[s])
        for s in seeds
    ]))  # fmt: skip
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    kind = "seeds+examples" if d.hierarchical else "examples"
    extra = {}
    if method.metric in CORRECTNESS_METRICS:
        b = sum(int(np.sum(method.correct(s) & ~baseline.correct(s))) for s in seeds)
        c = sum(int(np.sum(~method.correct(s) & baseline.correct(s))) for s in seeds)
        extra = {"mcnemar_b": b, "mcnemar_c": c, "p_mcnemar": mcnemar_exact(b, c)}
    return Comparison(
        len(seeds), n, observed, float(low), float(high), bootstrap_p(diffs), kind, **extra
    )


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from bootstrap replicates of the difference:
    twice the smaller tail beyond zero, with the +1 correction (never exactly 0)."""
    if np.all(diffs == 0):
        return 1.0
    b = len(diffs)
    below = (np.sum(diffs <= 0) + 1) / (b + 1)
    above = (np.sum(diffs >= 0) + 1) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact test: the two-sided binomial test of b successes in b + c trials
    at p = 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binom

    k = min(b, c)
    return float(min(1.0, 2 * binom.cdf(k, n, 0.5)))


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None)."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(
    diff: float, p: float | None, higher_is_better: bool, alpha: float = 0.05
) -> str | None:
    if p is None:
        return None
    if p >= alpha or diff == 0:
        return "tie"
    return "better" if (diff > 0) == higher_is_better else "worse"


def front_probability(
    samples: dict[str, np.ndarray], costs: dict[str, float], higher_is_better: bool
) -> dict[str, float]:
    """For each method, the share of bootstrap replicates in which it is on the Pareto
    front of (quality, cost): its replicate quality against the others' (same replicate
    index), costs held at their medians. Methods without a cost are left out."""
    names = [n for n in samples if costs.get(n) is not None and not math.isnan(costs[n])]
    if not names:
        return {}
    sign = 1.0 if higher_is_better else -1.0
    quality = np.stack([sign * samples[n] for n in names])  # (M, B)
    cost = np.asarray([costs[n] for n in names])[:, None, None]  # (M, 1, 1)
    q_self, q_other = quality[:, None, :], quality[None, :, :]  # (M, 1, B), (1, M, B)
    c_self, c_other = cost, cost.transpose(1, 0, 2)
    dominates = (
        (q_other >= q_self) & (c_other <= c_self) & ((q_other > q_self) | (c_other < c_self))
    )
    on_front = ~dominates.any(axis=1)  # (M, B)
    return {n: float(on_front[i].mean()) for i, n in enumerate(names)}
