"""Item-level statistics: the user run that the seed-level statistics got wrong,
reproduced; intervals inside the metric's range; the bootstrap and McNemar code checked
against scipy; Holm and Pareto-under-noise on cases derived by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from suite import itemstats
from suite.cells import expand
from suite.results import CellResult, SplitPredictions
from suite.specs.matrix import MatrixSpec
from suite.store.store import Store
from tests.helpers import catalog

N_TEST = 189  # drug-condition's test reviews


def _predictions(correct: np.ndarray, gold: np.ndarray) -> SplitPredictions:
    pred = np.where(correct, gold, (gold + 1) % 10)
    return SplitPredictions(pred=pred.astype(float).tolist(), gold=gold.astype(float).tolist(),
                            score=[1.0] * len(gold))  # fmt: skip


def _store_user_run(tmp_path, n_correct: dict[tuple[str, int], int]) -> Store:
    """LoRA and a second method on drug-condition, two seeds, written through Store.write
    with per-example predictions having the given numbers of correct test reviews."""
    matrix = MatrixSpec(
        name="user", models=["minilm-l6"], methods=["lora", {"method": "lora", "label": "plugin",
        "params": {"r": 4}}], tasks=["drug-condition"], seeds=[0, 1],
    )  # fmt: skip
    store = Store(tmp_path / "u.duckdb")
    store.init()
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 10, N_TEST)
    for cell in expand(matrix, catalog()):
        k = n_correct[(cell.method.label, cell.seed)]
        correct = np.zeros(N_TEST, dtype=bool)
        correct[rng.permutation(N_TEST)[:k]] = True
        result = CellResult(
            cell_id=cell.cell_id, status="ok", test_metrics={"accuracy": k / N_TEST},
            val_metrics={"accuracy": k / N_TEST}, baseline_test={"accuracy": 0.4021},
            predictions={"test": _predictions(correct, gold)},
        )  # fmt: skip
        store.write(cell, result, {})
    return store


def test_the_user_run_the_seed_level_test_called_a_tie_is_significant_over_examples(tmp_path):
    # LoRA 0.672 (116 and 138 of 189) against 0.407 (76 and 78 of 189): seed-level p = 0.12.
    counts = {("lora", 0): 116, ("lora", 1): 138, ("plugin", 0): 76, ("plugin", 1): 78}
    store = _store_user_run(tmp_path, counts)
    board = store.query(
        "SELECT method, mean, ci_low, ci_high, ci_kind, t_ci_low, t_ci_high, vs_baseline, "
        "vs_baseline_t, p_value, n_pairs, p_boot, p_holm, p_mcnemar, verdict_basis, "
        "mcnemar_b, mcnemar_c, holm_test "
        "FROM leaderboard ORDER BY method"
    ).set_index("method")
    lora, plugin = board.loc["lora"], board.loc["plugin"]
    assert lora["mean"] == pytest.approx(0.672, abs=1e-3)
    assert plugin["mean"] == pytest.approx(0.407, abs=1e-3)
    # The seed-level t over 2 seeds: an interval past 1, and no call.
    assert lora["t_ci_high"] > 1.0 and plugin["vs_baseline_t"] == "tie"
    assert 0.05 < plugin["p_value"] < 0.2 and plugin["n_pairs"] == 2
    # Over the 189 paired reviews: significant after Holm, by the exact sign-flip test on
    # each review's difference summed over both seeds (issue 27: not McNemar pooled over
    # the seeds, which counted every review twice as if it were two).
    assert plugin["vs_baseline"] == "worse" and plugin["verdict_basis"] == "examples (Holm)"
    assert plugin["holm_test"] == "sign-flip (exact)" and plugin["p_holm"] < 0.01
    assert plugin["p_holm"] == plugin["p_mcnemar"] < 1e-6  # one comparison: Holm keeps it
    assert plugin["mcnemar_b"] + plugin["mcnemar_c"] <= N_TEST  # reviews, not seed-reviews
    for row in (lora, plugin):
        assert 0.0 <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= 1.0
        assert row["ci_kind"] == "examples"  # fewer than 3 seeds: over examples only


def test_equal_methods_are_a_tie_over_examples(tmp_path):
    counts = {("lora", 0): 100, ("lora", 1): 101, ("plugin", 0): 100, ("plugin", 1): 101}
    store = _store_user_run(tmp_path, counts)
    plugin = store.query("SELECT vs_baseline, p_holm FROM leaderboard WHERE method = 'plugin'")
    assert plugin["vs_baseline"][0] == "tie" and plugin["p_holm"][0] > 0.05


def _outcomes(values: dict[int, np.ndarray], gold: np.ndarray, metric="accuracy"):
    return itemstats.Outcomes(metric, values, {s: gold for s in values})


def test_the_interval_over_examples_matches_scipys_percentile_bootstrap():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, 300)
    pred = np.where(rng.random(300) < 0.7, gold, 1 - gold)
    ours = itemstats.interval(_outcomes({0: pred}, gold), "x", n_boot=4000)
    correct = (pred == gold).astype(float)
    ref = sps.bootstrap((correct,), np.mean, n_resamples=4000, method="percentile",
                        confidence_level=0.95, random_state=0).confidence_interval  # fmt: skip
    assert ours.kind == "examples"
    assert ours.low == pytest.approx(ref.low, abs=0.01)
    assert ours.high == pytest.approx(ref.high, abs=0.01)


def test_hierarchical_with_three_seeds_and_correlations_stay_in_range():
    rng = np.random.default_rng(2)
    gold = rng.normal(size=50)
    seeds = {s: gold + rng.normal(scale=0.05 + 0.5 * s, size=50) for s in range(3)}
    iv = itemstats.interval(_outcomes(seeds, gold, "pearson"), "y")
    assert iv.kind == "seeds+examples"
    assert -1.0 <= iv.low <= iv.high <= 1.0
    # A near-perfect correlation: the upper bound would pass 1 with a t-interval, not here.
    perfect = itemstats.interval(
        _outcomes({s: gold + 1e-3 * s for s in range(3)}, gold, "pearson"), "z"
    )
    assert perfect.high <= 1.0 and perfect.low > 0.99


def test_mcnemar_is_scipys_exact_binomial_test():
    for b, c in [(0, 0), (5, 0), (3, 9), (12, 30), (40, 41)]:
        ours = itemstats.mcnemar_exact(b, c)
        ref = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
        assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_paired_bootstrap_pairs_examples_and_counts_discordance():
    gold = np.zeros(100, dtype=int)
    a = np.zeros(100, dtype=int)  # always right
    b = np.r_[np.zeros(80, dtype=int), np.ones(20, dtype=int)]  # wrong on the last 20
    cmp = itemstats.compare(_outcomes({0: a}, gold), _outcomes({0: b}, gold), "k")
    assert cmp.diff == pytest.approx(0.2) and cmp.diff_low > 0
    assert (cmp.mcnemar_b, cmp.mcnemar_c) == (20, 0) and cmp.p_mcnemar == pytest.approx(2 * 0.5**20)
    assert cmp.p_boot <= 2 / (itemstats.N_BOOT + 1) + 1e-12
    assert cmp.test == "sign-flip (exact)" and cmp.p_test == cmp.p_mcnemar


def test_holm_by_hand():
    # p sorted 0.01, 0.02, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.02), max(0.04, 1 x 0.04).
    assert itemstats.holm([0.04, 0.01, None, 0.02]) == pytest.approx([0.04, 0.03, None, 0.04])


def test_front_probability_by_hand():
    b = 200
    samples = {"cheap-bad": np.full(b, 0.5), "dear-good": np.full(b, 0.9),
               "dominated": np.full(b, 0.4), "noisy": np.r_[np.full(b // 2, 0.95), np.full(b // 2, 0.3)]}  # fmt: skip
    costs = {"cheap-bad": 1.0, "dear-good": 10.0, "dominated": 5.0, "noisy": 10.0}
    p = itemstats.front_probability(samples, costs, higher_is_better=True)
    assert p == {"cheap-bad": 1.0, "dear-good": 0.5, "dominated": 0.0, "noisy": 0.5}
