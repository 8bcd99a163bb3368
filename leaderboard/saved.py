"""The Ablations page's saved queries: named SELECTs over the store's views.

They are trusted, fixed text (the SQL box shows them for copying); the only inputs are
the sidebar's task, model and protocol, passed as bound parameters (one protocol per
series: two budgets never share a line).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from leaderboard.catalog import with_names
from leaderboard.data import Reader
from leaderboard.pagedata import chosen_protocol


@dataclass(frozen=True)
class SavedQuery:
    """A named ablation: its SQL (`?` = task, model, protocol) and how to chart it."""

    title: str
    description: str
    sql: str
    x: str
    y: str
    color: str
    x_log: bool = False
    views: tuple[str, ...] = ("leaderboard",)
    facet: str | None = None  # one panel per value of this column
    # Said instead of a chart when no row has a y value (e.g. std with one seed each).
    no_y: str = "No row has a value to chart."


SAVED: dict[str, SavedQuery] = {
    "rank": SavedQuery(
        "Quality against rank, per method",
        "Each method's mean test score (95% CI over seeds) at each value of its size "
        "hyperparameter (rank r, density, ...), from the `rank_sweep` view.",
        "SELECT method_kind, method, profile, sweep_param, sweep_value, mean, ci_low, "
        "ci_high, n_seeds, trainable_params FROM rank_sweep WHERE task = ? AND model = ? "
        "AND protocol = ? "
        "ORDER BY method_kind, profile, sweep_value",
        x="sweep_value",
        y="mean",
        color="method_kind",
        views=("rank_sweep",),
    ),
    "lr": SavedQuery(
        "Learning-rate sensitivity",
        "Mean test score against learning rate for every configuration of a method kind "
        "(leaderboard rows), so a method that only works at one rate shows it.",
        "SELECT method_kind, method, profile, lr, mean, ci_low, ci_high, n_seeds "
        "FROM leaderboard WHERE task = ? AND model = ? AND protocol = ? "
        "ORDER BY method_kind, lr",
        x="lr",
        y="mean",
        color="method_kind",
        x_log=True,
    ),
    "tuning": SavedQuery(
        "Tuning-budget curves",
        "Each method's expected best validation score after k of its tuning trials "
        "(Dodge et al. 2019), with the test score of the configuration validation would "
        "select at each k; one panel per method. From the `tuning_curves` view.",
        "SELECT method, k, n_trials, expected_best_val, expected_best_val_std, "
        "expected_test_of_selected FROM tuning_curves WHERE task = ? AND model = ? "
        "AND protocol = ? ORDER BY method, k",
        x="k",
        y="expected_best_val",
        color="name",
        views=(),
        facet="name",
    ),
    "seeds": SavedQuery(
        "Seed variance",
        "Standard deviation over seeds and the 95% interval's width, widest first; "
        "single-seed rows have no interval and are listed last.",
        "SELECT method, profile, n_seeds, n_failed, mean, std, ci_high - ci_low AS ci_width "
        "FROM leaderboard WHERE task = ? AND model = ? AND protocol = ? "
        "ORDER BY ci_width DESC NULLS LAST",
        x="name",
        y="std",
        color="profile",
        no_y="Every configuration here ran with a single seed, so there is no spread over "
        "seeds to chart: run the matrix with 2 or more seeds (3 or more for the bootstrap "
        "over seeds) to see it.",
    ),
}


def run_saved(
    reader: Reader, name: str, task: str, model: str, protocol: str | None = None
) -> pd.DataFrame:
    """Run a saved query by its whitelisted name with the task, model and protocol (None:
    the store's default) bound."""
    query = SAVED[name]
    protocol = protocol or chosen_protocol(reader, None)
    return _named(reader.frame(query.sql, [task, model, protocol], views=query.views))


def _named(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with each method's written `name` beside its label (charts show the name)."""
    if "method" not in frame:
        return frame
    columns = list(frame.columns)
    columns.insert(columns.index("method") + 1, "name")
    return with_names(frame)[columns]
