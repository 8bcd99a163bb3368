"""The data each page shows, built from the store's views with bound parameters only.

One function per page returns plain DataFrames (no Streamlit), so the static report and
`bench/leaderboard_speed.py` build exactly what the app shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
import yaml

from leaderboard.data import Reader
from suite.specs.task import MetricSpec

ALL_TASKS = "(all tasks)"
ALL_PROFILES = "(all profiles)"

# Cost axes of the Pareto page: view column -> (label, unit factor, unit, log scale).
COST_AXES: dict[str, tuple[str, float, str, bool]] = {
    "trainable_params": ("Trainable parameters", 1.0, "", True),
    "peak_memory_bytes": ("Peak training memory", 2.0**-20, "MiB", False),
    "train_wall_s": ("Training time", 1.0, "s", False),
    "latency_unmerged_s": ("Inference latency (unmerged)", 1000.0, "ms", False),
    "adapter_bytes": ("Adapter size", 2.0**-10, "KiB", True),
}
# How each cost axis reads in a table (leaderboard/format.py).
COST_KINDS = {
    "trainable_params": "count",
    "peak_memory_bytes": "bytes",
    "train_wall_s": "duration",
    "latency_unmerged_s": "duration",
    "adapter_bytes": "bytes",
}
_KEY = ["task", "task_hash", "model", "method", "method_hash", "budget", "profile"]


@dataclass(frozen=True)
class Filters:
    """What the sidebar selected; every value reaches SQL as a bound parameter."""

    task: str
    model: str
    profile: str = ALL_PROFILES
    # Only rows of methods whose fidelity is `reference` (golden-tested against their
    # own code; docs/fidelity.md).
    reference_only: bool = False


def choices(reader: Reader) -> pd.DataFrame:
    """(task, model, profile) of the leaderboard with their row counts, for the selectors."""
    return reader.frame(
        "SELECT task, model, profile, count(*) AS n FROM leaderboard "
        "GROUP BY task, model, profile ORDER BY task, model, profile",
        views=["leaderboard"],
    )


def _profile_clause(filters: Filters) -> tuple[str, list]:
    """The sidebar's profile and fidelity choices, as a bound WHERE fragment."""
    clause, params = "", []
    if filters.profile != ALL_PROFILES:
        clause, params = " AND profile = ?", [filters.profile]
    if filters.reference_only:
        clause += " AND fidelity = 'reference'"
    return clause, params


def leaderboard_rows(reader: Reader, filters: Filters) -> pd.DataFrame:
    """Leaderboard rows for one task and model (optionally one profile), best first."""
    clause, extra = _profile_clause(filters)
    return reader.frame(
        "SELECT * FROM leaderboard WHERE task = ? AND model = ?"
        + clause
        + ' ORDER BY profile, budget, "rank", method',
        [filters.task, filters.model, *extra],
        views=["leaderboard"],
    )


def reference_rows(reader: Reader, task_types: list[str]) -> pd.DataFrame:
    """Numbers reported in papers for these task types (`reference_results`, loaded from
    suite/references/ at Store.init); empty for a store made before that table existed."""
    exists = reader.frame(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'reference_results'"
    )
    if not task_types or not int(exists["n"].iloc[0]):
        return pd.DataFrame()
    return reader.frame(
        "SELECT * FROM reference_results WHERE task_type IN (SELECT unnest(?)) "
        "ORDER BY paper, table_ref, method, tokens",
        [sorted(task_types)],
    )


def all_tasks_rows(reader: Reader, filters: Filters) -> pd.DataFrame:
    """The aggregate over tasks: mean score and mean rank per method (stale rows excluded)."""
    clause, extra = _profile_clause(filters)
    return reader.frame(
        "SELECT * FROM aggregate WHERE model = ?" + clause + " ORDER BY mean_rank, method",
        [filters.model, *extra],
        views=["aggregate"],
    )


@dataclass(frozen=True)
class Metric:
    """The primary metric as the task YAML declares it."""

    name: str
    display: str
    unit: str
    higher_is_better: bool

    @property
    def label(self) -> str:
        arrow = "higher is better" if self.higher_is_better else "lower is better"
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.display}{unit}, {arrow}"


def primary_metric(reader: Reader, task: str) -> Metric:
    """Display name, unit and direction of a task's primary metric, from its stored YAML."""
    frame = reader.frame(
        "SELECT task_yaml, primary_metric FROM cell_runs WHERE task = ? "
        "AND task_yaml IS NOT NULL ORDER BY finished_at DESC LIMIT 1",
        [task],
    )
    if frame.empty:
        return Metric("score", "Score", "", True)
    return _metric_from_yaml(frame["task_yaml"].iloc[0], frame["primary_metric"].iloc[0])


@lru_cache(maxsize=64)
def _metric_from_yaml(task_yaml: str, name: str) -> Metric:
    spec = yaml.safe_load(task_yaml) or {}
    for raw in spec.get("metrics", []):
        m = MetricSpec.model_validate(raw)
        if m.name == name:
            return Metric(m.name, m.display or m.name, m.unit or "", m.higher_is_better)
    return Metric(name, name, "", True)


def overview_data(reader: Reader, filters: Filters) -> pd.DataFrame:
    """Overview: the leaderboard rows, or the aggregate when all tasks are chosen."""
    if filters.task == ALL_TASKS:
        return all_tasks_rows(reader, filters)
    return leaderboard_rows(reader, filters)


def pareto_data(reader: Reader, filters: Filters, axis: str) -> pd.DataFrame:
    """Pareto points on one cost axis, with the hover's hyperparameters and cell ids."""
    if axis not in COST_AXES:
        raise ValueError(f"unknown cost axis {axis!r}; choose one of {sorted(COST_AXES)}")
    clause, extra = _profile_clause(filters)
    points = reader.frame(
        "SELECT * FROM pareto WHERE task = ? AND model = ? AND cost_axis = ?"
        + clause
        + " ORDER BY profile, cost",
        [filters.task, filters.model, axis, *extra],
        views=["pareto"],
    )
    rows = leaderboard_rows(reader, filters)
    wanted = ["family", "n_seeds", "lr", "params", "cell_ids", "baseline_value", "method_version"]
    detail = rows[_KEY + [c for c in wanted if c not in points.columns]]
    merged = points.merge(detail, on=_KEY, how="left")
    label, factor, unit, _ = COST_AXES[axis]
    merged["cost_display"] = merged["cost"] * factor
    merged["cell_ids_text"] = merged["cell_ids"].map(_join_ids)
    return merged


def _join_ids(ids) -> str:
    return "" if ids is None or not len(ids) else ", ".join(str(i) for i in ids)


def method_data(reader: Reader, method: str) -> dict[str, pd.DataFrame]:
    """Method page: its stored YAML, its leaderboard rows everywhere, and its loss curves."""
    spec = reader.frame(
        "SELECT method_name, method_kind, family, method_yaml FROM cell_runs "
        "WHERE method = ? ORDER BY finished_at DESC LIMIT 1",
        [method],
    )
    rows = reader.frame(
        'SELECT * FROM leaderboard WHERE method = ? ORDER BY task, model, profile, "rank"',
        [method],
        views=["leaderboard"],
    )
    return {"spec": spec, "rows": rows, "curves": loss_curves(reader, rows)}


def loss_curves(reader: Reader, rows: pd.DataFrame) -> pd.DataFrame:
    """Loss curves of the cells behind leaderboard rows (their latest ok attempt).

    The leaderboard's `cell_ids` already name the reported cells, so the curves come from
    `cell_runs` by id instead of re-evaluating the `results` view over every row.
    """
    ids = sorted({str(i) for ids in rows.get("cell_ids", []) for i in ids})
    if not ids:
        return pd.DataFrame(columns=["cell_id", "task", "model", "profile", "seed", "loss_curve"])
    frame = reader.frame(
        "SELECT cell_id, task, model, profile, seed, loss_curve FROM cell_runs "
        "WHERE status = 'ok' AND len(loss_curve) > 0 AND cell_id IN (SELECT unnest(?)) "
        "ORDER BY finished_at",
        [ids],
    )
    latest = frame.drop_duplicates("cell_id", keep="last")
    return latest.sort_values(["task", "model", "profile", "seed"]).reset_index(drop=True)


def tuning_curve(reader: Reader, method: str) -> pd.DataFrame:
    """The method's tuning-budget curves, on every task and model it was tuned on."""
    return reader.frame(
        "SELECT task, model, profile, k, n_trials, expected_best_val, expected_best_val_std, "
        "expected_test_of_selected FROM tuning_curves WHERE method = ? "
        "ORDER BY task, model, profile, k",
        [method],
    )


def lost_to_baseline(reader: Reader, method: str, limit: int = 200) -> pd.DataFrame:
    """Test examples the method gets wrong (most seeds) that its baseline method gets right."""
    return reader.frame(
        "SELECT task, model, profile, baseline_method, example, gold, prediction, "
        "baseline_prediction, share_correct, baseline_share_correct FROM lost_to_baseline "
        "WHERE method = ? ORDER BY task, model, profile, example LIMIT ?",
        [method, limit],
    )


def methods(reader: Reader) -> list[str]:
    frame = reader.frame(
        "SELECT DISTINCT method FROM leaderboard ORDER BY method", views=["leaderboard"]
    )
    return frame["method"].tolist()


def long_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, logged step) for a line chart of the loss."""
    rows = [
        {"cell": f"{r.task} / {r.profile} / seed {r.seed}", "point": i, "loss": float(v)}
        for r in curves.itertuples()
        for i, v in enumerate(r.loss_curve)
    ]
    return pd.DataFrame(rows, columns=["cell", "point", "loss"])
