"""Item-level statistics: every comparison uses the test examples, not only seed means.

A method's score on a task is the mean over seeds of its metric on the test split. Every
seed is scored on the same test examples, so a bootstrap replicate draws the examples
ONCE and every seed, and every method of the comparison group, is re-scored on that one
draw (drawing them per seed would treat each seed as a new test set and shrink the
item variance by about 1/S). Seeds are resampled too where there are 3 or more
(hierarchical: the same seed positions for every method with that many seeds); with
fewer, the seeds stay fixed and the interval covers the test examples only: with 2
seeds, how much those two trained models' mean could move on another test set drawn
like this one, not how much a new training seed would move it.

One `Draws` per group (keyed by the group, not the method) serves the intervals, the
paired comparisons and Pareto-under-noise, so replicate b of every method saw the same
examples. A percentile interval of resampled metric values never leaves the metric's
range, and is clipped once more for safety.

A comparison with the baseline reports the paired bootstrap of the difference (interval
and a two-sided p-value, `N_BOOT` replicates: its floor 2/(N_BOOT+1) stays far below
0.05 after Holm over the league's ~50 methods). Where the metric is an accuracy (exact
match included) it also reports an exact sign-flip test on the examples' differences
summed over the common seeds (`sign_flip_exact`): at one seed that is McNemar's exact
test, and copies of a seed do not change it. That exact test is the one Holm corrects
for accuracies (no Monte Carlo error, no floor); other metrics use the bootstrap p.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from suite.resample import correct as correct_per_example
from suite.resample import linear_form, weighted_metric
from suite.tasks.metrics import METRIC_RANGES, METRICS

# 20,000 replicates: p_boot's floor is 2/20,001 = 1.0e-4 (5.0e-3 after Holm over 50
# methods); its Monte Carlo standard error near p = 0.05 is 2 sqrt(0.025 x 0.975 / B) =
# 0.0022.
N_BOOT = 20_000
# Replicates drawn and scored at a time: about 2e6 example counts (16 MB) per chunk.
CHUNK_CELLS = 2_000_000
HIERARCHICAL_MIN_SEEDS = 3
LEVEL = 0.95
# Metrics that are a mean of per-example correctness: the exact sign-flip (McNemar) test.
CORRECTNESS_METRICS = frozenset({"accuracy", "exact_match"})


@dataclass(frozen=True)
class Outcomes:
    """One method's test predictions, per seed, aligned by example (same ids per seed)."""

    metric: str
    pred: dict[int, np.ndarray]
    gold: dict[int, np.ndarray]
    _correct: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.pred)

    @property
    def n_examples(self) -> int:
        return len(self.gold[self.seeds[0]])

    def value(self, seeds: list[int] | None = None) -> float:
        """The reported score: the metric per seed, averaged over seeds."""
        return float(
            np.mean([METRICS[self.metric](self.pred[s], self.gold[s]) for s in seeds or self.seeds])
        )

    def correct(self, seed: int) -> np.ndarray:
        if seed not in self._correct:  # asked for by every comparison of the group
            self._correct[seed] = correct_per_example(self.pred[seed], self.gold[seed])
        return self._correct[seed]


def rng_for(*key: str) -> np.random.Generator:
    digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:16]
    return np.random.default_rng(int(digest, 16))


@dataclass(frozen=True)
class Draws:
    """A group's bootstrap: which examples (and seed positions) each replicate uses.

    Chunk c of the replicates comes from its own generator, keyed by the group and c, so
    any method of the group regenerates exactly the same draws without storing them."""

    key: str
    n_examples: int
    n_boot: int = N_BOOT

    def chunks(self) -> list[tuple[int, int]]:
        size = max(100, min(1_000, CHUNK_CELLS // max(self.n_examples, 1)))
        return [(lo, min(lo + size, self.n_boot)) for lo in range(0, self.n_boot, size)]

    def example_counts(self, lo: int, hi: int) -> np.ndarray:
        """(hi - lo, n): how often each replicate drew each example (once for all seeds)."""
        n, size = self.n_examples, hi - lo
        idx = rng_for("examples", self.key, str(lo)).integers(0, n, size=(size, n))
        flat = (idx + (np.arange(size) * n)[:, None]).ravel()
        return np.bincount(flat, minlength=size * n).reshape(size, n).astype(float)

    def seed_counts(self, n_seeds: int, lo: int, hi: int) -> np.ndarray:
        """(hi - lo, S): how often each replicate drew each seed position; every seed once
        below HIERARCHICAL_MIN_SEEDS. The same for every method with S seeds (paired)."""
        if n_seeds < HIERARCHICAL_MIN_SEEDS:
            return np.ones((hi - lo, n_seeds))
        rng = rng_for("seeds", self.key, str(n_seeds), str(lo))
        idx = rng.integers(0, n_seeds, size=(hi - lo, n_seeds))
        return np.stack([(idx == s).sum(axis=1) for s in range(n_seeds)], axis=1).astype(float)


def kind_of(n_seeds: int) -> str:
    return "seeds+examples" if n_seeds >= HIERARCHICAL_MIN_SEEDS else "examples"


Request = tuple[Outcomes, list[int]]  # a method and the seeds to score it on


def replicate_rows(requests: list[Request], d: Draws) -> np.ndarray:
    """(R, B): each request's metric, averaged over its (resampled) seeds, per replicate;
    every request sees the same example draws. Metrics with a linear form (all but
    Spearman: suite/resample.py) share one matrix product per chunk of replicates."""
    forms = [[linear_form(o.metric, o.pred[s], o.gold[s]) for s in seeds] for o, seeds in requests]
    linear = [f for per_request in forms for f in per_request if f is not None]
    columns = np.concatenate([c for c, _ in linear], axis=1) if linear else None
    out = np.empty((len(requests), d.n_boot))
    for lo, hi in d.chunks():
        w = d.example_counts(lo, hi)
        sums = w @ columns if columns is not None else None
        count, at = w.sum(axis=1), 0
        for r, (o, seeds) in enumerate(requests):
            scores = np.empty((hi - lo, len(seeds)))
            for j, form in enumerate(forms[r]):
                if form is None:
                    scores[:, j] = weighted_metric(o.metric, o.pred[seeds[j]], o.gold[seeds[j]], w)
                    continue
                width = form[0].shape[1]
                scores[:, j] = form[1](sums[:, at : at + width], count)
                at += width
            v = d.seed_counts(len(seeds), lo, hi)
            out[r, lo:hi] = (scores * v).sum(axis=1) / len(seeds)
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
    """The method's score with its percentile bootstrap interval, inside the metric's range
    (on draws of its own; a group's methods share theirs: suite/store/comparisons.py)."""
    d = Draws(key, outcomes.n_examples, n_boot)
    return interval_of(outcomes, replicate_rows([(outcomes, outcomes.seeds)], d)[0])


def interval_of(outcomes: Outcomes, samples: np.ndarray) -> Interval:
    alpha, m = (1 - LEVEL) / 2, outcomes.metric
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    n_seeds = len(outcomes.seeds)
    return Interval(
        outcomes.value(), clip(low, m), clip(high, m), kind_of(n_seeds), n_seeds,
        outcomes.n_examples, samples,
    )  # fmt: skip


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
    # Accuracies: examples where the method is ahead of the baseline (right on more of the
    # common seeds), and behind; at one seed McNemar's discordant pairs. p_mcnemar is the
    # exact sign-flip test on those differences (McNemar's exact test at one seed).
    mcnemar_b: int | None = None
    mcnemar_c: int | None = None
    p_mcnemar: float | None = None

    @property
    def test(self) -> str:
        """The test Holm corrects: exact where one exists, else the bootstrap."""
        return "sign-flip (exact)" if self.p_mcnemar is not None else "bootstrap"

    @property
    def p_test(self) -> float:
        return self.p_mcnemar if self.p_mcnemar is not None else self.p_boot


def common_seeds(method: Outcomes, baseline: Outcomes) -> list[int] | None:
    """The seeds both ran, or None without any or with examples that do not line up."""
    seeds = sorted(set(method.seeds) & set(baseline.seeds))
    if not seeds:
        return None
    n = method.n_examples
    if any(len(x.gold[s]) != n for x in (method, baseline) for s in seeds):
        return None
    return seeds


def compare(
    method: Outcomes, baseline: Outcomes, key: str, n_boot: int = N_BOOT
) -> Comparison | None:
    """Paired bootstrap (and the exact sign-flip test for accuracies) over the common
    seeds, on draws of its own; None without common seeds or aligned examples."""
    seeds = common_seeds(method, baseline)
    if seeds is None:
        return None
    d = Draws(key, method.n_examples, n_boot)
    rows = replicate_rows([(method, seeds), (baseline, seeds)], d)
    return comparison_of(method, baseline, seeds, rows[0] - rows[1])


def comparison_of(
    method: Outcomes, baseline: Outcomes, seeds: list[int], diffs: np.ndarray
) -> Comparison:
    """The comparison from paired replicates of the difference (same draws for both)."""
    observed = method.value(seeds) - baseline.value(seeds)
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    extra = {}
    if method.metric in CORRECTNESS_METRICS:
        ahead = np.sum([method.correct(s).astype(int) - baseline.correct(s) for s in seeds], 0)
        extra = {"mcnemar_b": int(np.sum(ahead > 0)), "mcnemar_c": int(np.sum(ahead < 0)),
                 "p_mcnemar": sign_flip_exact(ahead)}  # fmt: skip
    return Comparison(
        len(seeds), method.n_examples, observed, float(low), float(high), bootstrap_p(diffs),
        kind_of(len(seeds)), **extra,
    )  # fmt: skip


def sign_flip_exact(diffs: np.ndarray) -> float:
    """Two-sided exact sign-flip (randomisation) test of "no difference" on integer
    per-example differences: under the null each example's difference is as likely
    negated, so the sum's null distribution is that of sum(+-|d_i|), the convolution of
    one scaled binomial per distinct |d_i|. p = P(|T| >= |observed sum|). With 0/1
    differences (one seed) this is McNemar's exact test; scaling every difference (copies
    of a seed) leaves it unchanged."""
    from scipy.stats import binom

    d = np.asarray(diffs, dtype=np.int64)
    observed = abs(int(d.sum()))
    if observed == 0:
        return 1.0
    g = int(np.gcd.reduce(np.abs(d[d != 0])))
    magnitudes, counts = np.unique(np.abs(d[d != 0]) // g, return_counts=True)
    pmf, low = np.ones(1), 0  # the null distribution of T on low, low + 1, ...
    for v, m in zip(magnitudes.tolist(), counts.tolist(), strict=True):
        # T gains v (2X - m), X ~ Binomial(m, 1/2): values -vm .. vm in steps of 2v.
        weights = binom.pmf(np.arange(m + 1), m, 0.5)
        new = np.zeros(len(pmf) + 2 * v * m)
        for x, wx in enumerate(weights):
            if wx == 0.0:  # underflow far in the tails
                continue
            new[2 * v * x : 2 * v * x + len(pmf)] += wx * pmf
        pmf, low = new, low - v * m
    upper = pmf[observed // g - low :].sum()
    return float(min(1.0, 2 * upper))


def group_statistics(
    key: str, outcomes: dict, baselines: dict
) -> tuple[dict[object, Interval], dict[object, Comparison]]:
    """Every method's interval, and its comparison with its baseline (`baselines`: method
    -> baseline, both keys of `outcomes`), from ONE set of draws keyed by the group: its
    replicate b re-scores every seed of every method on the same examples, so intervals,
    paired differences and Pareto replicates (`Interval.samples`) line up."""
    requests: list[Request] = [(o, o.seeds) for o in outcomes.values()]
    index = {mk: i for i, mk in enumerate(outcomes)}
    pairs = {}
    for mk, base in baselines.items():
        o, b = outcomes[mk], outcomes[base]
        seeds = common_seeds(o, b)
        if seeds is None:
            continue
        if seeds == o.seeds == b.seeds:
            pairs[mk] = (base, seeds, index[mk], index[base])
        else:  # score both on the common seeds only
            requests += [(o, seeds), (b, seeds)]
            pairs[mk] = (base, seeds, len(requests) - 2, len(requests) - 1)
    samples = _by_size(key, requests)
    intervals = {mk: interval_of(o, samples[index[mk]]) for mk, o in outcomes.items()}
    compared = {
        mk: comparison_of(outcomes[mk], outcomes[base], seeds, samples[i] - samples[j])
        for mk, (base, seeds, i, j) in pairs.items()
    }
    return intervals, compared


def _by_size(key: str, requests: list[Request]) -> list[np.ndarray]:
    """Each request's replicates; one Draws per test-set size (one, in a sound group)."""
    out: list[np.ndarray] = [np.empty(0)] * len(requests)
    by_size: dict[int, list[int]] = {}
    for i, (o, _) in enumerate(requests):
        by_size.setdefault(o.n_examples, []).append(i)
    for n, members in by_size.items():
        rows = replicate_rows([requests[i] for i in members], Draws(key, n))
        for i, row in zip(members, rows, strict=True):
            out[i] = row
    return out


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
