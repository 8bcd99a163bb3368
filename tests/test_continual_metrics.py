"""GEM's ACC, BWT and FWT on a hand-made accuracy matrix (suite/continual/metrics.py)."""

import pytest

from suite.continual.metrics import transfer

# R[i][j]: accuracy on task j after training through task i.
R = [
    [0.90, 0.40, 0.55],
    [0.70, 0.80, 0.50],
    [0.60, 0.75, 0.85],
]
B = [0.30, 0.35, 0.50]


def test_acc_is_the_mean_of_the_last_row():
    assert transfer(R, B).acc == pytest.approx((0.60 + 0.75 + 0.85) / 3)


def test_bwt_is_the_mean_drop_from_each_task_just_after_training_to_the_end():
    # (0.60 - 0.90) + (0.75 - 0.80), over the T - 1 = 2 tasks before the last
    assert transfer(R, B).bwt == pytest.approx(((0.60 - 0.90) + (0.75 - 0.80)) / 2)


def test_fwt_is_the_mean_gain_over_the_baseline_before_each_task_is_trained():
    # R[0][1] - b[1] and R[1][2] - b[2]; task 0 has no earlier task
    assert transfer(R, B).fwt == pytest.approx(((0.40 - 0.35) + (0.50 - 0.50)) / 2)


def test_a_learner_that_never_forgets_has_zero_bwt():
    kept = [[0.9, 0.1], [0.9, 0.8]]
    assert transfer(kept, [0.1, 0.1]).bwt == 0.0


@pytest.mark.parametrize(
    ("r", "b", "message"),
    [
        ([[0.5]], [0.5], "at least 2 tasks"),
        ([[0.5, 0.5], [0.5]], [0.5, 0.5], "not 2 x 2: row 1 has 1"),
        ([[0.5, 0.5], [0.5, 0.5]], [0.5], "1 entries for 2 tasks"),
    ],
)
def test_a_malformed_matrix_is_refused(r, b, message):
    with pytest.raises(ValueError, match=message):
        transfer(r, b)
