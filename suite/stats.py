"""Seed statistics: confidence intervals and paired comparisons against a baseline method.

A method's reported score is the mean over seeds of its selected configuration, with a
95% t-interval. "Better" or "worse" than the matrix's baseline method is called only
where a paired t-test over the seeds both ran (same seed = same data order and head
initialisation) rejects equality at `ALPHA`; otherwise the difference is a tie.
The views read the results from two tables this module fills (`t_critical`,
`comparisons`), so they need no user functions on a read-only connection.
"""

from __future__ import annotations

import math
from collections import defaultdict
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
        """'better' | 'worse' | 'tie', or None where the test cannot be run (< 2 pairs)."""
        if self.p_value is None:
            return None
        if self.p_value >= alpha or self.mean_diff == 0:
            return "tie"
        return "better" if (self.mean_diff > 0) == higher_is_better else "worse"


def paired_test(method: dict[int, float], baseline: dict[int, float]) -> Paired:
    """Paired t-test (scipy.stats.ttest_rel) over the seeds present in both.

    Identical differences on every seed have zero variance: scipy's statistic is then
    undefined, so the p-value is 1 for no difference and 0 for a constant non-zero one.
    """
    seeds = sorted(set(method) & set(baseline))
    diffs = [method[s] - baseline[s] for s in seeds]
    if len(diffs) < 2 or any(math.isnan(d) for d in diffs):
        mean = sum(diffs) / len(diffs) if diffs else float("nan")
        return Paired(len(diffs), mean, None, None)
    mean = sum(diffs) / len(diffs)
    if max(diffs) - min(diffs) <= 1e-12 * max(1.0, abs(mean)):
        return Paired(len(diffs), mean, None, 1.0 if mean == 0 else 0.0)
    from scipy.stats import ttest_rel

    res = ttest_rel([method[s] for s in seeds], [baseline[s] for s in seeds])
    return Paired(len(diffs), mean, float(res.statistic), float(res.pvalue))


def fill_t_table(con) -> None:
    """Fill `t_critical` once (df 1..T_TABLE_MAX_DF); larger df use the normal 1.96."""
    if con.execute("SELECT count(*) FROM t_critical").fetchone()[0]:
        return
    from scipy.stats import t

    rows = [(df, float(t.ppf(0.975, df))) for df in range(1, T_TABLE_MAX_DF + 1)]
    con.executemany("INSERT INTO t_critical VALUES (?, ?)", rows)


def fill_sweep_params(con) -> None:
    from suite.store.views import SWEEP_PARAMS

    con.executemany(
        "INSERT OR IGNORE INTO sweep_params VALUES (?)", [(name,) for name in SWEEP_PARAMS]
    )


_ROWS = """
SELECT task_hash, model, method, method_hash, CAST(budget AS VARCHAR), profile,
       baseline_method, seed, test_primary, higher_is_better
FROM results
WHERE status = 'ok' AND coalesce(phase, 'single') <> 'trial' AND test_primary IS NOT NULL"""


def refresh_comparisons(con, scope: tuple[str, str, str] | None = None) -> int:
    """Recompute methods' paired tests against their baseline; returns the row count.

    Groups are (task protocol, model, budget, profile); within one, the baseline is the
    group whose label is the row's `baseline_method` (the one with most seeds if several
    configurations share the label). `scope` = (task_hash, model, profile) limits the
    refresh to what one new result can change, so a write costs one group, not the table.
    """
    groups: dict[tuple, dict[tuple, dict[int, float]]] = defaultdict(dict)
    meta: dict[tuple, tuple[str | None, bool]] = {}
    where, params = (
        (" AND task_hash = ? AND model = ? AND profile = ?", list(scope)) if scope else ("", [])
    )
    for task_hash, model, method, mhash, budget, profile, base, seed, value, hib in con.execute(
        _ROWS + where, params
    ).fetchall():
        key = (task_hash, model, budget, profile)
        groups[key].setdefault((method, mhash), {})[seed] = value
        meta[(*key, method, mhash)] = (base, bool(hib))
    rows = []
    for key, methods in groups.items():
        for (method, mhash), scores in methods.items():
            base_label, hib = meta[(*key, method, mhash)]
            rows.append(_comparison_row(key, method, mhash, scores, methods, base_label, hib))
    con.execute("DELETE FROM comparisons WHERE true" + where, params)
    if rows:
        con.executemany(f"INSERT INTO comparisons VALUES ({', '.join('?' * 13)})", rows)
    return len(rows)


def _comparison_row(key, method, mhash, scores, methods, base_label, hib) -> tuple:
    task_hash, model, budget, profile = key
    candidates = [(m, h) for (m, h) in methods if m == base_label]
    if not candidates or method == base_label:
        verdict = "baseline" if method == base_label else None
        return (task_hash, model, method, mhash, budget, profile, base_label, None,
                None, None, None, None, verdict)  # fmt: skip
    base = max(candidates, key=lambda mh: (len(methods[mh]), mh[1]))
    test = paired_test(scores, methods[base])
    return (task_hash, model, method, mhash, budget, profile, base_label, base[1],
            test.n_pairs, test.mean_diff, test.t_stat, test.p_value, test.verdict(hib))  # fmt: skip
