"""The analysis views: leaderboard, pareto, trials, rank_sweep, aggregate.

They read the `results` view (latest attempt of each cell) and two small tables the
store fills, so a plain read-only connection with no user functions can query them:

- `t_critical`: the two-sided 95% critical value of Student's t per degree of freedom
  (DuckDB has no t distribution), for confidence intervals over seeds.
- `comparisons`: each method's paired t-test against the matrix's baseline method,
  pairing by seed (scipy), refreshed by the store after every write
  (`suite.store.comparisons.refresh_comparisons`).
Each row names its method's size hyperparameters (`size_params`, declared in the
method's YAML) for the rank/density ablation.

Contract with the leaderboard app (columns may be added, never renamed or removed):
see docs/tasks-and-fairness.md. Tuning trials never enter the leaderboard; they have
their own view. Two protocols (task hash, budget, profile) never share a row or a rank.
"""

from __future__ import annotations

ANALYSIS_TABLES = [
    "CREATE TABLE IF NOT EXISTS t_critical (df INTEGER PRIMARY KEY, t975 DOUBLE NOT NULL)",
    """CREATE TABLE IF NOT EXISTS comparisons (
        task_hash VARCHAR NOT NULL, model VARCHAR NOT NULL, method VARCHAR NOT NULL,
        method_hash VARCHAR NOT NULL, budget VARCHAR NOT NULL, profile VARCHAR NOT NULL,
        baseline_method VARCHAR, baseline_method_hash VARCHAR, n_pairs INTEGER,
        mean_diff DOUBLE, t_stat DOUBLE, p_value DOUBLE, vs_baseline VARCHAR)""",
]

# Cells that count for the leaderboard: everything but tuning trials. A row's
# metric_version (in `results`, kept per cell as it is written) is the newest version
# stored for its primary metric, any split.
_REPORTED = """
    SELECT r.*, CAST(r.budget AS VARCHAR) AS budget_key
    FROM results r
    WHERE coalesce(r.phase, 'single') <> 'trial'"""

_GROUP = "task, task_hash, model, method, method_hash, budget_key, profile"

LEADERBOARD = f"""CREATE OR REPLACE VIEW leaderboard AS
WITH reported AS ({_REPORTED}),
failed AS (
    SELECT {_GROUP}, count(*) AS n_failed FROM reported WHERE status <> 'ok' GROUP BY ALL),
grouped AS (
    SELECT task, task_hash, model, method, method_hash, budget_key AS budget, profile,
        any_value(family) AS family, any_value(method_kind) AS method_kind,
        any_value(fidelity) AS fidelity,
        max(coalesce(method_version, 1)) AS method_version,
        string_agg(DISTINCT base_dtype, ',') AS base_dtype,
        string_agg(DISTINCT adapter_dtype, ',') AS adapter_dtype,
        string_agg(DISTINCT matrix, ',' ORDER BY matrix) AS matrix,
        any_value(task_type) AS task_type,
        any_value(primary_metric) AS primary_metric,
        bool_and(higher_is_better) AS higher_is_better,
        count(*) AS n_seeds,
        avg(test_primary) AS mean,
        stddev_samp(test_primary) AS std,
        avg(val_primary) AS val_mean,
        any_value(baseline_test_primary) AS baseline_value,
        avg(trainable_params) AS trainable_params,
        avg(total_params) AS total_params,
        avg(peak_memory_bytes) AS peak_memory_bytes,
        avg(train_wall_s) AS train_wall_s,
        avg(tokens_per_s) AS tokens_per_s,
        avg(latency_unmerged_s) AS latency_unmerged_s,
        avg(latency_merged_s) AS latency_merged_s,
        avg(merge_time_s) AS merge_time_s,
        avg(adapter_bytes) AS adapter_bytes,
        avg(forgetting_delta_loss) AS forgetting_delta_loss,
        any_value(lr) AS lr,
        any_value(params) AS params,
        any_value(size_params) AS size_params,
        list(cell_id ORDER BY seed) AS cell_ids,
        list(seed ORDER BY seed) AS seeds,
        any_value(baseline_method) AS baseline_method,
        any_value(tuning) AS tuning,
        any_value(selection) AS selection,
        any_value(note) AS note,
        max(metric_version) AS metric_version
    FROM reported WHERE status = 'ok'
    GROUP BY task, task_hash, model, method, method_hash, budget_key, profile)
SELECT g.*,
    coalesce(f.n_failed, 0) AS n_failed,
    CASE WHEN g.n_seeds > 1 THEN g.mean - coalesce(t.t975, 1.959964) * g.std / sqrt(g.n_seeds)
    END AS ci_low,
    CASE WHEN g.n_seeds > 1 THEN g.mean + coalesce(t.t975, 1.959964) * g.std / sqrt(g.n_seeds)
    END AS ci_high,
    100.0 * g.trainable_params / nullif(g.total_params, 0) AS trainable_pct,
    c.baseline_method_hash, c.n_pairs, c.mean_diff AS diff_vs_baseline, c.p_value,
    c.vs_baseline,
    rank() OVER (
        PARTITION BY g.task, g.task_hash, g.model, g.budget, g.profile
        ORDER BY CASE WHEN g.higher_is_better THEN -g.mean ELSE g.mean END NULLS LAST
    ) AS "rank",
    g.metric_version < max(g.metric_version) OVER (PARTITION BY g.task)
        OR g.method_version < max(g.method_version) OVER (PARTITION BY g.task, g.method)
        AS stale,
    concat_ws(', ',
        CASE WHEN g.metric_version < max(g.metric_version) OVER (PARTITION BY g.task)
            THEN 'older metric version' END,
        CASE WHEN g.method_version < max(g.method_version) OVER (PARTITION BY g.task, g.method)
            THEN 'older method version' END) AS stale_reason
FROM grouped g
LEFT JOIN failed f ON f.task_hash = g.task_hash AND f.model = g.model
    AND f.method = g.method AND f.method_hash = g.method_hash
    AND f.budget_key = g.budget AND f.profile = g.profile
LEFT JOIN t_critical t ON t.df = g.n_seeds - 1
LEFT JOIN comparisons c ON c.task_hash = g.task_hash AND c.model = g.model
    AND c.method = g.method AND c.method_hash = g.method_hash
    AND c.budget = g.budget AND c.profile = g.profile"""

_KEY = "task, task_hash, model, method, method_hash, budget, profile"
COST_AXES = (
    "trainable_params",
    "peak_memory_bytes",
    "train_wall_s",
    "latency_unmerged_s",
    "adapter_bytes",
)

# A point is on the front when no other point of its (task, task_hash, model, budget,
# profile, cost_axis) is at least as good in quality and cost and strictly better in one.
# Each method appears once per partition (the leaderboard groups by it), and a point
# never dominates itself, so that is: its quality is strictly better than every point of
# strictly lower cost (`best_cheaper`: the frame is the rows ordered before it, minus its
# cost peers) and no point of the same cost has better quality (`best_same_cost`). Two
# windows, O(n log n), instead of a self-join; tests/test_views.py checks it against a
# brute-force front on random points with ties.
_FRONT = "PARTITION BY task, task_hash, model, budget, profile, cost_axis"
PARETO = f"""CREATE OR REPLACE VIEW pareto AS
WITH points AS (
    SELECT {_KEY}, family, method_kind, fidelity, matrix, primary_metric, higher_is_better,
        mean, ci_low, ci_high, stale, cost_axis, cost,
        CASE WHEN higher_is_better THEN mean ELSE -mean END AS quality
    FROM (
        SELECT {_KEY}, family, method_kind, fidelity, matrix, primary_metric,
            higher_is_better, mean, ci_low, ci_high, stale, {", ".join(f"CAST({a} AS DOUBLE) AS {a}" for a in COST_AXES)}
        FROM leaderboard WHERE mean IS NOT NULL)
    UNPIVOT (cost FOR cost_axis IN ({", ".join(COST_AXES)}))),
bests AS (
    SELECT *,
        max(quality) OVER ({_FRONT} ORDER BY cost
            RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE GROUP) AS best_cheaper,
        max(quality) OVER ({_FRONT}, cost) AS best_same_cost
    FROM points)
SELECT * EXCLUDE (quality, best_cheaper, best_same_cost),
    (best_cheaper IS NULL OR quality > best_cheaper) AND quality >= best_same_cost AS on_front
FROM bests"""

TRIALS = """CREATE OR REPLACE VIEW trials AS
SELECT r.task, r.task_hash, r.model, r.method, r.method_kind, r.family, r.method_hash,
    CAST(r.budget AS VARCHAR) AS budget, r.profile, r.matrix, r.tuning, r.trial_index,
    r.seed, r.lr, r.params, r.status, r.error, r.primary_metric, r.higher_is_better,
    r.val_primary AS val_score, r.trainable_params, r.train_wall_s, r.cell_id,
    EXISTS (
        -- A final row names the trial cells it chose among and the index it selected.
        SELECT 1 FROM results f
        WHERE f.phase = 'final' AND f.task_hash = r.task_hash AND f.model = r.model
          AND f.method = r.method
          AND CAST(json_extract(f.selection, '$.trial_cell_ids') AS VARCHAR[])[
                CAST(json_extract(f.selection, '$.selected_trial') AS INTEGER) + 1
              ] = r.cell_id
    ) AS selected
FROM results r WHERE r.phase = 'trial'"""

RANK_SWEEP = """CREATE OR REPLACE VIEW rank_sweep AS
WITH sizes AS (SELECT *, unnest(size_params) AS sweep_param FROM leaderboard)
SELECT task, task_hash, model, method, method_kind, family, method_hash,
    budget, profile, primary_metric, higher_is_better, sweep_param,
    TRY_CAST(json_extract_string(params, '$.' || sweep_param) AS DOUBLE) AS sweep_value,
    mean, std, ci_low, ci_high, n_seeds, trainable_params, stale
FROM sizes
WHERE TRY_CAST(json_extract_string(params, '$.' || sweep_param) AS DOUBLE) IS NOT NULL"""

AGGREGATE = """CREATE OR REPLACE VIEW aggregate AS
SELECT model, method, any_value(family) AS family, any_value(fidelity) AS fidelity,
    budget, profile,
    count(DISTINCT task) AS n_tasks, list(DISTINCT task ORDER BY task) AS tasks,
    avg(mean) AS mean_score, avg("rank") AS mean_rank,
    sum(CASE WHEN vs_baseline = 'better' THEN 1 ELSE 0 END) AS n_better,
    sum(CASE WHEN vs_baseline = 'worse' THEN 1 ELSE 0 END) AS n_worse
FROM leaderboard WHERE NOT stale
GROUP BY model, method, budget, profile"""

ANALYSIS_VIEWS = [LEADERBOARD, PARETO, TRIALS, RANK_SWEEP, AGGREGATE]

VIEW_NAMES = ("results", "leaderboard", "pareto", "trials", "rank_sweep", "aggregate")

# `peftbench query --view NAME`: the view's rows in a useful order, and the columns a
# terminal table shows (csv and json show every column).
VIEW_ORDER = {
    "results": "task, model, method, seed",
    "leaderboard": 'task, model, budget, profile, "rank", method',
    "pareto": "task, model, cost_axis, cost",
    "trials": "task, model, method, trial_index",
    "rank_sweep": "task, model, method_kind, sweep_param, sweep_value",
    "aggregate": "model, mean_rank",
}
VIEW_COLUMNS = {
    "results": "task, model, method, seed, phase, status, primary_metric, val_primary, "
    "test_primary, trainable_params",
    "leaderboard": 'task, model, method, fidelity, "rank", primary_metric, n_seeds, n_failed, '
    "mean, ci_low, ci_high, baseline_value, vs_baseline, p_value, trainable_pct, lr, stale",
    "pareto": "task, model, method, cost_axis, cost, mean, on_front",
    "trials": "task, model, method, trial_index, lr, params, status, val_score, selected",
    "rank_sweep": "task, model, method, sweep_param, sweep_value, n_seeds, mean, ci_low, "
    "ci_high, trainable_params",
    "aggregate": "model, method, n_tasks, mean_score, mean_rank, n_better, n_worse",
}


def view_query(name: str, all_columns: bool) -> str:
    """The SELECT for a named view; `name` must be one of VIEW_NAMES (never user SQL)."""
    if name not in VIEW_NAMES:
        raise ValueError(f"unknown view {name!r}; choose one of {', '.join(VIEW_NAMES)}")
    columns = "*" if all_columns else VIEW_COLUMNS[name]
    return f"SELECT {columns} FROM {name} ORDER BY {VIEW_ORDER[name]}"
