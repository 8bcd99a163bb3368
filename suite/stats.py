"""Seed statistics: confidence intervals and paired comparisons against a baseline method.

A method's reported score is the mean over seeds of its selected configuration, with a
95% t-interval. "Better" or "worse" than the matrix's baseline method is called only
where a paired t-test over the seeds both ran (same seed = same data order and head
initialisation) rejects equality at `ALPHA`; otherwise the difference is a tie.
Pure statistics: suite/store/comparisons.py writes what the views read from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
T_TABLE_MAX_DF = 1000


def t_critical(df: int, level: float = 0.95) -> float:
    """Two-sided critical value of Student's t with `df` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_ci(
    values: list[float], level: float = 0.95
) -> tuple[float, float, float | None, float | None]:
    """(mean, sample std, ci_low, ci_high); the interval is None for a single seed."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan"), None, None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_critical(n - 1, level) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


@dataclass(frozen=True)
class Paired:
    """A paired t-test of a method against the baseline over their common seeds."""

    n_pairs: int
    mean_diff: float
    t_stat: float | None
    p_value: float | None

    def verdict(self, higher_is_better: bool, alpha: float = ALPHA) -> str | None:
        """'better' | 'worse' | 'tie', or None where the test cannot be run (< 2 pairs).
        Identical differences on every seed (no p-value) are a tie: the t-test is
        undefined there, and two seeds each one test example ahead show no significance."""
        if self.n_pairs < 2 or math.isnan(self.mean_diff):
            return None
        if self.p_value is None:
            return "tie"
        if self.p_value >= alpha or self.mean_diff == 0:
            return "tie"
        return "better" if (self.mean_diff > 0) == higher_is_better else "worse"


def paired_test(method: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Paired t-test (scipy.stats.ttest_rel) over the seeds present in both.

    Identical differences on every seed have zero variance: the t statistic is then
    undefined, so the p-value is 1 for no difference and undefined (None, verdict 'tie')
    for a constant non-zero one; never 0.
    """
    seeds = sorted(set(method) & set(baseline))
    diffs = [method[s] - baseline[s] for s in seeds]
    if len(diffs) < 2 or any(math.isnan(d) for d in diffs):
        mean = sum(diffs) / len(diffs) if diffs else float("nan")
        return Paired(len(diffs), mean, None, None)
    mean = sum(diffs) / len(diffs)
    if max(diffs) - min(diffs) <= 1e-12 * max(1.0, abs(mean)):
        return Paired(len(diffs), mean, None, 1.0 if mean == 0 else None)
    from scipy.stats import ttest_rel

    res = ttest_rel([method[s] for s in seeds], [baseline[s] for s in seeds])
    return Paired(len(diffs), mean, float(res.statistic), float(res.pvalue))
