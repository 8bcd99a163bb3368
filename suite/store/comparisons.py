"""The tables the analysis views read statistics from, filled by the store.

The views need no user functions on a read-only connection, so the store keeps:
`t_critical` (Student's t critical values per degree of freedom) and `comparisons`
(each method's paired test against its matrix's baseline method), refreshed for the
comparison group of every result it writes. The statistics are suite/stats.py's.
"""

from __future__ import annotations

from collections import defaultdict

from suite.stats import T_TABLE_MAX_DF, paired_test


def fill_t_table(con) -> None:
    """Fill `t_critical` once (df 1..T_TABLE_MAX_DF); larger df use the normal 1.96."""
    if con.execute("SELECT count(*) FROM t_critical").fetchone()[0]:
        return
    from scipy.stats import t

    rows = [(df, float(t.ppf(0.975, df))) for df in range(1, T_TABLE_MAX_DF + 1)]
    con.executemany("INSERT INTO t_critical VALUES (?, ?)", rows)


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
