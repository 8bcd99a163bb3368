"""Tuning-budget curves (expected best validation score after k trials, Dodge et al.
2019) and the agreement views, on rows whose answers are derived by hand."""

from __future__ import annotations

import numpy as np
import pytest

from suite.store.store import Store
from tests.test_item_stats import _store_user_run
from tests.test_views import _row


def _trials(store: Store, method: str, vals: list[float], tests: list[float | None]) -> None:
    with store.connect() as con:
        for i, (val, test) in enumerate(zip(vals, tests, strict=True)):
            rid = f"{method}-trial-{i}"
            _row(con, method, 0, None, val=val, phase="trial", trial_index=i, result_id=rid,
                 cell_id=f"{method}-t{i}")  # fmt: skip
            con.execute(
                "INSERT INTO metrics VALUES (?, 'validation', 'accuracy', ?, 1, true)", [rid, val]
            )
            if test is not None:  # None: a trial without a kept-apart test score
                con.execute(
                    "INSERT INTO metrics VALUES (?, 'trial_test', 'accuracy', ?, 1, true)",
                    [rid, test],
                )
        from suite.store.schema import rebuild_latest

        rebuild_latest(con)


def test_expected_best_of_k_trials_and_the_test_score_validation_selects(tmp_path):
    store = Store(tmp_path / "c.duckdb")
    store.init()
    _trials(store, "lora", [0.5, 0.7, 0.6], [0.4, 0.9, 0.55])
    curve = store.query(
        "SELECT k, n_trials, expected_best_val, expected_best_val_std, expected_test_of_selected "
        "FROM tuning_curves WHERE method = 'lora' ORDER BY k"
    )
    assert list(curve["k"]) == [1, 2, 3] and set(curve["n_trials"]) == {3}
    # k = 1: the mean; k = 3: 0.5/27 + 0.6 x 7/27 + 0.7 x 19/27 = 18/27.
    assert curve["expected_best_val"].tolist() == pytest.approx(
        [0.6, (0.5 + 0.6 * 3 + 0.7 * 5) / 9, 18 / 27]
    )
    assert curve["expected_test_of_selected"].tolist()[0] == pytest.approx((0.4 + 0.55 + 0.9) / 3)
    assert curve["expected_test_of_selected"].tolist()[2] == pytest.approx(
        (0.4 + 0.55 * 7 + 0.9 * 19) / 27
    )
    # The spread at k = 1 is the trials' population standard deviation.
    assert curve["expected_best_val_std"][0] == pytest.approx(np.std([0.5, 0.7, 0.6]))
    assert (curve["expected_best_val"].diff().dropna() >= 0).all()  # more trials never hurt


def _selected_test_by_enumeration(vals: list[float], tests: list[float], k: int) -> float:
    """Every ordered draw of k trials (with replacement), selected as tuning.select does."""
    import itertools

    from suite.tuning import select

    draws = list(itertools.product(range(len(vals)), repeat=k))
    picks = [sorted(d)[select([vals[i] for i in sorted(d)], True)] for d in draws]
    return float(np.mean([tests[i] for i in picks]))


def test_tied_validation_scores_select_the_earlier_trial_as_tuning_select_does(tmp_path):
    # issue 27: the view ranked the later of two tied trials best (0.4222 at k = 2 and
    # 0.3259 at k = 3); tuning.select keeps the earlier, so enumeration gives these.
    vals, tests = [0.7, 0.5, 0.7], [0.9, 0.6, 0.1]
    store = Store(tmp_path / "t.duckdb")
    store.init()
    _trials(store, "lora", vals, tests)
    curve = store.query(
        "SELECT k, expected_test_of_selected FROM tuning_curves WHERE method = 'lora' ORDER BY k"
    )
    got = curve["expected_test_of_selected"].tolist()
    assert got[1:] == pytest.approx([0.6000, 0.6815], abs=5e-5)
    assert got == pytest.approx([_selected_test_by_enumeration(vals, tests, k) for k in (1, 2, 3)])


def test_a_trial_without_a_test_score_leaves_the_expected_test_score_unknown(tmp_path):
    # Its weight was dropped without renormalising the others (0.9 x 5/9 + 0.6 x 1/9 at
    # k = 2 instead of a weighted mean); any trial can be the one selected, so: NULL.
    store = Store(tmp_path / "n.duckdb")
    store.init()
    _trials(store, "lora", [0.7, 0.5, 0.6], [0.9, 0.6, None])
    curve = store.query(
        "SELECT k, expected_best_val, expected_test_of_selected FROM tuning_curves "
        "WHERE method = 'lora' ORDER BY k"
    )
    assert curve["expected_test_of_selected"].isna().all()
    assert curve["expected_best_val"].notna().all()  # validation is still complete


def test_disagreements_and_what_a_method_loses_to_the_baseline(tmp_path):
    counts = {("lora", 0): 116, ("lora", 1): 138, ("plugin", 0): 76, ("plugin", 1): 78}
    store = _store_user_run(tmp_path, counts)
    outcome = store.query(
        "SELECT method, example, share_correct FROM example_outcomes ORDER BY method, example"
    )
    share = {m: part.set_index("example")["share_correct"] for m, part in outcome.groupby("method")}
    lost = store.query("SELECT example FROM lost_to_baseline WHERE method = 'plugin'")["example"]
    expected = sorted(e for e in range(189) if share["plugin"][e] < 0.5 <= share["lora"][e])
    assert sorted(lost) == expected and expected
    split = store.query("SELECT example, n_right, n_methods FROM disagreements")
    want = sorted(e for e in range(189) if (share["plugin"][e] >= 0.5) != (share["lora"][e] >= 0.5))
    assert sorted(split["example"]) == want
    assert set(split["n_right"]) == {1} and set(split["n_methods"]) == {2}
