"""The data each page shows, built from the store's views with bound parameters only.

One function per page returns plain DataFrames (no Streamlit), so the static report and
`bench/leaderboard_speed.py` build exactly what the app shows. Every page shows one
benchmark protocol (`Filters.protocol`; unset: `default_protocol`), so rows of two
protocols are never ranked, charted or listed together.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd
import yaml

from leaderboard.catalog import with_names, written_names
from leaderboard.data import Reader
from suite.specs.task import MetricSpec
from suite.store.protocols import LEAGUE_PROTOCOL, describe, protocol_labels

ALL_TASKS = "(all tasks)"
ALL_PROFILES = "(all profiles)"

# Cost axes of the Pareto page: view column -> (label, unit factor, unit, log scale).
COST_AXES: dict[str, tuple[str, float, str, bool]] = {
    "trainable_params": ("Trainable parameters", 1.0, "", True),
    "peak_memory_bytes": ("Peak training memory", 2.0**-20, "MiB", False),
    "train_wall_s": ("Training time", 1.0, "s", False),
    "latency_unmerged_s": ("Inference latency (unmerged)", 1000.0, "ms", False),
    "adapter_bytes": ("Adapter size", 2.0**-10, "KiB", True),
    # The base as stored while training (bf16, nf4, pruned, low-rank: base_bytes), and what
    # training holds beyond it (trainable weights, gradients, optimiser state, activations).
    "base_bytes": ("Base memory", 2.0**-20, "MiB", False),
    "training_memory_bytes": ("Training memory (beyond the base)", 2.0**-20, "MiB", False),
}
# How each cost axis reads in a table (leaderboard/format.py).
COST_KINDS = {
    "trainable_params": "count",
    "peak_memory_bytes": "bytes",
    "train_wall_s": "duration",
    "latency_unmerged_s": "duration",
    "adapter_bytes": "bytes",
    "base_bytes": "bytes",
    "training_memory_bytes": "bytes",
}
_KEY = ["task", "task_hash", "model", "method", "method_hash", "budget", "profile", "protocol"]


@dataclass(frozen=True)
class Filters:
    """What the sidebar selected; every value reaches SQL as a bound parameter."""

    task: str
    model: str
    profile: str = ALL_PROFILES
    # Only rows of methods whose fidelity is `reference` (golden-tested against their
    # own code; docs/fidelity.md).
    reference_only: bool = False
    # The benchmark protocol shown (None: `default_protocol` of the store).
    protocol: str | None = None


def protocols(reader: Reader) -> pd.DataFrame:
    """One row per protocol with reported rows (the `protocols` view), its name in words
    (`label`, what pages show; `protocol` is the stored id), its budget in words
    (`budget_words`), most rows first."""
    frame = reader.frame("SELECT * FROM protocols ORDER BY n_rows DESC, protocol")
    records = frame.to_dict("records")
    frame["label"] = protocol_labels(records)
    frame["budget_words"] = [describe(row) for row in records]
    return frame


def protocol_names(reader: Reader) -> dict[str, str]:
    """Stored protocol id -> its label in words (`protocols`), for pages and tables."""
    frame = protocols(reader)
    return dict(zip(frame["protocol"], frame["label"], strict=True))


def protocol_label(reader: Reader, protocol: str | None) -> str:
    """One protocol's label in words (the stored id where the store does not list it)."""
    return protocol_names(reader).get(protocol, str(protocol))


def default_protocol(frame: pd.DataFrame) -> str | None:
    """The protocol a page opens on: the published league where the store holds it,
    otherwise the protocol with the most rows (`frame`: `protocols`, most rows first)."""
    if frame.empty:
        return None
    names = frame["protocol"].tolist()
    return LEAGUE_PROTOCOL if LEAGUE_PROTOCOL in names else names[0]


def chosen_protocol(reader: Reader, filters: Filters | None) -> str | None:
    """The filters' protocol, or the store's default one."""
    if filters is not None and filters.protocol is not None:
        return filters.protocol
    return default_protocol(protocols(reader))


def choices(reader: Reader) -> pd.DataFrame:
    """(protocol, task, model, profile) of the leaderboard with their row counts, for the
    selectors."""
    return reader.frame(
        "SELECT protocol, task, model, profile, count(*) AS n FROM leaderboard "
        "GROUP BY protocol, task, model, profile ORDER BY protocol, task, model, profile",
        views=["leaderboard"],
    )


def _profile_clause(reader: Reader, filters: Filters) -> tuple[str, list]:
    """The sidebar's protocol, profile and fidelity choices, as a bound WHERE fragment."""
    clause, params = " AND protocol IS NOT DISTINCT FROM ?", [chosen_protocol(reader, filters)]
    if filters.profile != ALL_PROFILES:
        clause, params = clause + " AND profile = ?", [*params, filters.profile]
    if filters.reference_only:
        clause += " AND fidelity = 'reference'"
    return clause, params


def leaderboard_rows(reader: Reader, filters: Filters) -> pd.DataFrame:
    """Leaderboard rows for one task and model (optionally one profile), best first."""
    clause, extra = _profile_clause(reader, filters)
    return with_names(
        reader.frame(
            "SELECT * FROM leaderboard WHERE task = ? AND model = ?"
            + clause
            + ' ORDER BY profile, budget, "rank", method',
            [filters.task, filters.model, *extra],
            views=["leaderboard"],
        )
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
    clause, extra = _profile_clause(reader, filters)
    return with_names(
        reader.frame(
            "SELECT * FROM aggregate WHERE model = ?" + clause + " ORDER BY mean_rank, method",
            [filters.model, *extra],
            views=["aggregate"],
        )
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
    clause, extra = _profile_clause(reader, filters)
    points = reader.frame(
        "SELECT * FROM pareto WHERE task = ? AND model = ? AND cost_axis = ?"
        + clause
        + " ORDER BY profile, cost",
        [filters.task, filters.model, axis, *extra],
        views=["pareto"],
    )
    rows = leaderboard_rows(reader, filters)
    # `name`: as the Overview writes it (one name per label over all its rows).
    wanted = ["family", "n_seeds", "lr", "params", "cell_ids", "baseline_value", "method_version"]
    wanted.append("name")
    detail = rows[_KEY + [c for c in wanted if c not in points.columns]]
    merged = points.merge(detail, on=_KEY, how="left")
    label, factor, unit, _ = COST_AXES[axis]
    merged["cost_display"] = merged["cost"] * factor
    merged["cell_ids_text"] = merged["cell_ids"].map(_join_ids)
    return merged


def _join_ids(ids) -> str:
    return "" if ids is None or not len(ids) else ", ".join(str(i) for i in ids)


def method_data(
    reader: Reader, method: str, protocol: str | None = None
) -> dict[str, pd.DataFrame]:
    """Method page: its stored YAML, its leaderboard rows on every task and model of one
    protocol (None: the default), and its loss curves."""
    protocol = protocol or chosen_protocol(reader, None)
    spec = reader.frame(
        "SELECT method_name, method_kind, family, method_yaml FROM protocol_results "
        "WHERE method = ? AND protocol IS NOT DISTINCT FROM ? ORDER BY finished_at DESC LIMIT 1",
        [method, protocol],
    )
    rows = reader.frame(
        "SELECT * FROM leaderboard WHERE method = ? AND protocol IS NOT DISTINCT FROM ? "
        'ORDER BY task, model, profile, "rank"',
        [method, protocol],
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


def tuning_curve(reader: Reader, method: str, protocol: str | None = None) -> pd.DataFrame:
    """The method's tuning-budget curves, on every task and model it was tuned on in one
    protocol (None: the default)."""
    return reader.frame(
        "SELECT task, model, profile, k, n_trials, expected_best_val, expected_best_val_std, "
        "expected_test_of_selected FROM tuning_curves WHERE method = ? "
        "AND protocol IS NOT DISTINCT FROM ? ORDER BY task, model, profile, k",
        [method, protocol or chosen_protocol(reader, None)],
    )


def lost_to_baseline(
    reader: Reader, method: str, limit: int = 200, protocol: str | None = None
) -> pd.DataFrame:
    """Test examples the method gets wrong (most seeds) that its baseline method gets
    right, in one protocol (None: the default)."""
    frame = reader.frame(
        "SELECT task, model, profile, baseline_method, example, gold, prediction, "
        "baseline_prediction, share_correct, baseline_share_correct FROM lost_to_baseline "
        "WHERE method = ? AND protocol IS NOT DISTINCT FROM ? "
        "ORDER BY task, model, profile, example LIMIT ?",
        [method, protocol or chosen_protocol(reader, None), limit],
    )
    return frame.assign(baseline_name=written_names(frame, "baseline_method"))


def methods(reader: Reader, protocol: str | None = None) -> dict[str, str]:
    """The methods with leaderboard rows in one protocol (None: the default): each label
    (what selectors key on) and its written name, in the order of the names."""
    frame = reader.frame(
        "SELECT method, string_agg(DISTINCT matrix, ',') AS matrix FROM leaderboard "
        "WHERE protocol IS NOT DISTINCT FROM ? GROUP BY method ORDER BY method",
        [protocol or chosen_protocol(reader, None)],
        views=["leaderboard"],
    )
    names = zip(frame["method"], written_names(frame), strict=True)
    return dict(sorted(names, key=lambda pair: (pair[1].casefold(), pair[0])))


def long_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, logged step) for a line chart of the loss."""
    rows = [
        {"cell": f"{r.task} / {r.profile} / seed {r.seed}", "point": i, "loss": float(v)}
        for r in curves.itertuples()
        for i, v in enumerate(r.loss_curve)
    ]
    return pd.DataFrame(rows, columns=["cell", "point", "loss"])
