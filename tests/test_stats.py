"""Seed statistics against scipy and hand-computed values."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from suite.stats import mean_ci, paired_test, t_critical


def test_t_critical_hand_values():
    # Tables: t_{0.975, 1} = 12.706, t_{0.975, 2} = 4.303, t_{0.975, 30} = 2.042.
    assert t_critical(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_critical(2) == pytest.approx(4.3027, abs=1e-4)
    assert t_critical(30) == pytest.approx(2.0423, abs=1e-4)


def test_mean_ci_by_hand():
    # values 1, 2, 3: mean 2, sample std 1, half-width 4.3027 * 1 / sqrt(3) = 2.4841.
    mean, std, low, high = mean_ci([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    assert low == pytest.approx(2 - 2.48414, abs=1e-4)
    assert high == pytest.approx(2 + 2.48414, abs=1e-4)
    assert (low, high) == pytest.approx(sps.t.interval(0.95, 2, loc=2.0, scale=1 / math.sqrt(3)))


def test_single_seed_has_no_interval():
    mean, std, low, high = mean_ci([0.5])
    assert mean == 0.5 and math.isnan(std) and low is None and high is None


def test_paired_test_matches_scipy_and_pairs_by_seed():
    method = {0: 0.90, 1: 0.91, 2: 0.93, 7: 0.99}  # seed 7 has no partner: left out
    base = {2: 0.81, 1: 0.82, 0: 0.80}
    got = paired_test(method, base)
    ref = sps.ttest_rel([0.90, 0.91, 0.93], [0.80, 0.82, 0.81])
    assert got.n_pairs == 3
    assert got.mean_diff == pytest.approx(0.10333333)
    assert got.t_stat == pytest.approx(ref.statistic) and got.p_value == pytest.approx(ref.pvalue)
    assert got.verdict(higher_is_better=True) == "better"
    assert got.verdict(higher_is_better=False) == "worse"


def test_paired_test_by_hand():
    # diffs 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641; two-sided p = 0.0742.
    got = paired_test({0: 2.0, 1: 4.0, 2: 6.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert got.t_stat == pytest.approx(3.46410, abs=1e-4)
    assert got.p_value == pytest.approx(0.07418, abs=1e-4)
    assert got.verdict(True) == "tie"  # not significant at 0.05


def test_degenerate_cases():
    assert paired_test({0: 1.0}, {0: 0.0}).verdict(True) is None  # one pair: no test
    same = paired_test({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    assert same.p_value == 1.0 and same.verdict(True) == "tie"
    # issue 27: two seeds each ahead by one of 189 test examples have zero-variance
    # differences; the t-test is undefined there, which was p = 0 and "better".
    one = 1 / 189
    shifted = paired_test({0: 0.6 + one, 1: 0.7 + one}, {0: 0.6, 1: 0.7})
    assert shifted.n_pairs == 2 and shifted.mean_diff == pytest.approx(one)
    assert shifted.p_value is None and shifted.t_stat is None
    assert shifted.verdict(True) == "tie" and shifted.verdict(False) == "tie"


def test_scoped_refresh_after_each_write_equals_a_full_refresh(tmp_path):
    """Store.write refreshes only the written cell's group; the sum must equal a full pass."""
    import duckdb

    from suite.store.comparisons import refresh_comparisons
    from tests.support.demo import build_demo_db

    db = build_demo_db(tmp_path / "demo.duckdb")
    con = duckdb.connect(str(db))
    query = "SELECT * FROM comparisons ORDER BY ALL"
    scoped = con.execute(query).fetchall()
    refresh_comparisons(con)
    full = con.execute(query).fetchall()
    con.close()
    assert scoped == full
    assert len({(r[0], r[1], r[5]) for r in full}) > 1  # several groups were written
