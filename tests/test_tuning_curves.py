"""Tuning-budget curves (expected best validation score after k trials, Dodge et al.
2019) and the agreement views, on rows whose answers are derived by hand."""

from __future__ import annotations

import numpy as np
import pytest

from suite.store.store import Store
from tests.test_item_stats import _store_user_run
from tests.test_views import _row


def _trials(store: Store, method: str, vals: list[float], tests: list[float]) -> None:
    with store.connect() as con:
        for i, (val, test) in enumerate(zip(vals, tests, strict=True)):
            rid = f"{method}-trial-{i}"
            _row(con, method, 0, None, val=val, phase="trial", trial_index=i, result_id=rid,
                 cell_id=f"{method}-t{i}")  # fmt: skip
            con.execute(
                "INSERT INTO metrics VALUES (?, 'validation', 'accuracy', ?, 1, true)", [rid, val]
            )
            con.execute(
                "INSERT INTO metrics VALUES (?, 'trial_test', 'accuracy', ?, 1, true)", [rid, test]
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
