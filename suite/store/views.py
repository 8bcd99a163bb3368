"""The analysis views: leaderboard, pareto, trials, rank_sweep, aggregate.

They read the `results` view (latest attempt of each cell), as `protocol_results` (once
per protocol the cell belongs to: suite/store/protocols.py), and small tables the
store fills, so a plain read-only connection with no user functions can query them:

- `t_critical`: the two-sided 95% critical value of Student's t per degree of freedom
  (DuckDB has no t distribution), for confidence intervals over seeds.
- `comparisons`: each method's bootstrap interval over test examples (and seeds), its
  paired comparison with the matrix's baseline method over examples (Holm-corrected,
  McNemar for accuracies) and the seed-level paired t-test, refreshed by the store after
  every write (`suite.store.comparisons.refresh_comparisons`);
- `pareto_noise`: each method's probability of being on the Pareto front;
- `metric_ranges`: each metric's range, to clip intervals.
Each row names its method's size hyperparameters (`size_params`, declared in the
method's YAML) for the rank/density ablation.

Contract with the leaderboard app (columns may be added, never renamed or removed):
see docs/tasks-and-fairness.md. Tuning trials never enter the leaderboard; they have
their own view. Two comparison groups (benchmark protocol, task hash, budget, profile)
never share a row or a rank; every view carries the `protocol` column
(suite/store/protocols.py), and the leaderboard pages show one protocol at a time.
"""

from __future__ import annotations

from suite.results import PHASES, SCHEDULING_PHASES, phase_column
from suite.store.comparisons import TABLES as COMPARISON_TABLES
from suite.store.comparisons import TRAINING_MEMORY_SQL
from suite.store.protocols import PROTOCOLS

ANALYSIS_TABLES = COMPARISON_TABLES

# Cells that count for the leaderboard: everything but tuning trials. A row's
# metric_version (in `results`, kept per cell as it is written) is the newest version
# stored for its primary metric, any split.
_REPORTED = """
    SELECT r.*, CAST(r.budget AS VARCHAR) AS budget_key
    FROM protocol_results r
    WHERE coalesce(r.phase, 'single') <> 'trial'"""

_GROUP = "task, task_hash, model, method, method_hash, budget_key, profile, protocol"

LEADERBOARD = f"""CREATE OR REPLACE VIEW leaderboard AS
WITH reported AS ({_REPORTED}),
failed AS (
    SELECT {_GROUP}, count(*) AS n_failed FROM reported WHERE status <> 'ok' GROUP BY ALL),
grouped AS (
    SELECT task, task_hash, model, method, method_hash, budget_key AS budget, profile,
        protocol, any_value(family) AS family, any_value(method_kind) AS method_kind,
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
        string_agg(DISTINCT base_storage, ',') AS base_storage,
        avg(base_bytes) AS base_bytes,
        avg(inference_base_bytes) AS inference_base_bytes,
        avg({TRAINING_MEMORY_SQL}) AS training_memory_bytes,
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
        max(metric_version) AS metric_version,
        -- The published datasets the rows came from (NULL: all run in this store).
        string_agg(DISTINCT origin, ',' ORDER BY origin) AS origin
    FROM reported WHERE status = 'ok'
    GROUP BY {_GROUP})
SELECT g.*,
    coalesce(f.n_failed, 0) AS n_failed,
    -- The interval: the bootstrap's over examples (and seeds, with 3 or more), inside the
    -- metric's range; rows stored before predictions fall back to the t-interval over
    -- seeds, clipped to the range. The t-interval stays available beside it.
    -- (greatest/least skip NULLs, so a missing t bound is kept missing explicitly.)
    coalesce(c.boot_ci_low,
        CASE WHEN _t.t_low IS NOT NULL THEN greatest(_t.t_low, coalesce(mr.low, _t.t_low)) END)
        AS ci_low,
    coalesce(c.boot_ci_high,
        CASE WHEN _t.t_high IS NOT NULL THEN least(_t.t_high, coalesce(mr.high, _t.t_high)) END)
        AS ci_high,
    coalesce(c.ci_kind, CASE WHEN g.n_seeds > 1 THEN 'seeds (t)' END) AS ci_kind,
    _t.t_low AS t_ci_low, _t.t_high AS t_ci_high,
    100.0 * g.trainable_params / nullif(g.total_params, 0) AS trainable_pct,
    c.baseline_method_hash, c.n_pairs, c.mean_diff AS diff_vs_baseline, c.p_value,
    c.n_examples, c.diff AS item_diff, c.diff_low AS item_diff_low, c.diff_high AS item_diff_high,
    c.p_boot, c.p_holm, c.mcnemar_b, c.mcnemar_c, c.p_mcnemar, c.p_test, c.holm_test,
    -- The verdict from the item-level comparison (Holm-corrected), else the seed-level t.
    coalesce(c.vs_baseline, c.vs_baseline_t) AS vs_baseline,
    CASE WHEN c.vs_baseline IS NOT NULL AND c.vs_baseline <> 'baseline' THEN 'examples (Holm)'
         WHEN c.vs_baseline_t IS NOT NULL AND c.vs_baseline_t <> 'baseline' THEN 'seeds (t)'
    END AS verdict_basis,
    c.vs_baseline_t,
    rank() OVER (
        PARTITION BY g.task, g.task_hash, g.model, g.budget, g.profile, g.protocol
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
    AND f.protocol IS NOT DISTINCT FROM g.protocol
LEFT JOIN t_critical t ON t.df = g.n_seeds - 1
LEFT JOIN metric_ranges mr ON mr.metric = g.primary_metric
CROSS JOIN LATERAL (SELECT
    CASE WHEN g.n_seeds > 1 THEN g.mean - coalesce(t.t975, 1.959964) * g.std / sqrt(g.n_seeds)
    END AS t_low,
    CASE WHEN g.n_seeds > 1 THEN g.mean + coalesce(t.t975, 1.959964) * g.std / sqrt(g.n_seeds)
    END AS t_high) _t
LEFT JOIN comparisons c ON c.task_hash = g.task_hash AND c.model = g.model
    AND c.method = g.method AND c.method_hash = g.method_hash
    AND c.budget = g.budget AND c.profile = g.profile
    AND c.protocol IS NOT DISTINCT FROM g.protocol"""

_KEY = "task, task_hash, model, method, method_hash, budget, profile, protocol"
COST_AXES = (
    "trainable_params",
    "peak_memory_bytes",
    "train_wall_s",
    "latency_unmerged_s",
    "adapter_bytes",
    "base_bytes",
    "training_memory_bytes",
)

# A point is on the front when no other point of its (task, task_hash, model, budget,
# profile, protocol, cost_axis) is at least as good in quality and cost and strictly better in one.
# Each method appears once per partition (the leaderboard groups by it), and a point
# never dominates itself, so that is: its quality is strictly better than every point of
# strictly lower cost (`best_cheaper`: the frame is the rows ordered before it, minus its
# cost peers) and no point of the same cost has better quality (`best_same_cost`). Two
# windows, O(n log n), instead of a self-join; tests/test_views.py checks it against a
# brute-force front on random points with ties.
_FRONT = "PARTITION BY task, task_hash, model, budget, profile, protocol, cost_axis"
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
SELECT b.* EXCLUDE (quality, best_cheaper, best_same_cost),
    (b.best_cheaper IS NULL OR b.quality > b.best_cheaper) AND b.quality >= b.best_same_cost
        AS on_front,
    -- Over bootstrap replicates of quality, costs at their medians (store: pareto_noise).
    n.p_front
FROM bests b
LEFT JOIN pareto_noise n ON n.task_hash = b.task_hash AND n.model = b.model
    AND n.method = b.method AND n.method_hash = b.method_hash AND n.budget = b.budget
    AND n.profile = b.profile AND n.cost_axis = b.cost_axis
    AND n.protocol IS NOT DISTINCT FROM b.protocol"""

TRIALS = """CREATE OR REPLACE VIEW trials AS
SELECT r.task, r.task_hash, r.model, r.method, r.method_kind, r.family, r.method_hash,
    CAST(r.budget AS VARCHAR) AS budget, r.profile, r.matrix, r.tuning, r.trial_index,
    r.seed, r.lr, r.params, r.status, r.error, r.primary_metric, r.higher_is_better,
    r.val_primary AS val_score, tt.value AS trial_test_score, r.trainable_params,
    r.train_wall_s, r.cell_id, r.protocol,
    EXISTS (
        -- A final row names the trial cells it chose among and the index it selected.
        SELECT 1 FROM protocol_results f
        WHERE f.phase = 'final' AND f.task_hash = r.task_hash AND f.model = r.model
          AND f.method = r.method AND f.protocol IS NOT DISTINCT FROM r.protocol
          AND CAST(json_extract(f.selection, '$.trial_cell_ids') AS VARCHAR[])[
                CAST(json_extract(f.selection, '$.selected_trial') AS INTEGER) + 1
              ] = r.cell_id
    ) AS selected
FROM protocol_results r
-- A trial's test score, kept apart from selection (which reads val_score only).
LEFT JOIN metrics tt ON tt.result_id = r.result_id AND tt.split = 'trial_test'
    AND tt.metric = r.primary_metric
WHERE r.phase = 'trial'"""

RANK_SWEEP = """CREATE OR REPLACE VIEW rank_sweep AS
WITH sizes AS (SELECT *, unnest(size_params) AS sweep_param FROM leaderboard)
SELECT task, task_hash, model, method, method_kind, family, method_hash,
    budget, profile, protocol, primary_metric, higher_is_better, sweep_param,
    TRY_CAST(json_extract_string(params, '$.' || sweep_param) AS DOUBLE) AS sweep_value,
    mean, std, ci_low, ci_high, n_seeds, trainable_params, stale
FROM sizes
WHERE TRY_CAST(json_extract_string(params, '$.' || sweep_param) AS DOUBLE) IS NOT NULL"""

AGGREGATE = """CREATE OR REPLACE VIEW aggregate AS
SELECT model, method, any_value(family) AS family, any_value(fidelity) AS fidelity,
    budget, profile, protocol,
    -- The matrices behind its rows: the pages write each label as its matrix entry does.
    string_agg(DISTINCT matrix, ',' ORDER BY matrix) AS matrix,
    count(DISTINCT task) AS n_tasks, list(DISTINCT task ORDER BY task) AS tasks,
    avg(mean) AS mean_score, avg("rank") AS mean_rank,
    sum(CASE WHEN vs_baseline = 'better' THEN 1 ELSE 0 END) AS n_better,
    sum(CASE WHEN vs_baseline = 'worse' THEN 1 ELSE 0 END) AS n_worse
FROM leaderboard WHERE NOT stale
GROUP BY model, method, budget, profile, protocol"""

# Expected best validation score after k of a method's N trials (Dodge et al. 2019, "Show
# Your Work"): with the trials sorted by validation quality, trial i (1-based) is the best
# of k draws (with replacement) with probability w = (i/N)^k - ((i-1)/N)^k. The same
# weights give the spread of that best score, and the expected test score of the
# configuration validation would select (the trials' test scores, kept apart).
TUNING_CURVES = """CREATE OR REPLACE VIEW tuning_curves AS
WITH ranked AS (
    SELECT task, task_hash, model, method, budget, profile, protocol, primary_metric,
        higher_is_better, val_score, trial_test_score,
        count(*) OVER w AS n_trials,
        -- Ties: the earlier trial ranks higher, as tuning.select picks it.
        row_number() OVER (w ORDER BY CASE WHEN higher_is_better THEN val_score
            ELSE -val_score END, trial_index DESC) AS i,
        count(trial_test_score) OVER w AS n_tested
    FROM trials WHERE status = 'ok' AND val_score IS NOT NULL
    WINDOW w AS (PARTITION BY task, task_hash, model, method, budget, profile, protocol)),
weighted AS (
    SELECT r.*, k.k,
        pow(r.i / r.n_trials, k.k) - pow((r.i - 1) / r.n_trials, k.k) AS w
    FROM ranked r JOIN range(1, 1001) AS k(k) ON k.k <= r.n_trials)
SELECT task, task_hash, model, method, budget, profile, protocol, primary_metric,
    higher_is_better, k, any_value(n_trials) AS n_trials,
    sum(w * val_score) AS expected_best_val,
    sqrt(greatest(sum(w * val_score * val_score) - pow(sum(w * val_score), 2), 0))
        AS expected_best_val_std,
    -- Any trial could be the one selected, so a trial without a test score leaves the
    -- expected test score unknown (NULL) rather than renormalised over the others.
    CASE WHEN min(n_tested) = any_value(n_trials) THEN sum(w * trial_test_score) END
        AS expected_test_of_selected
FROM weighted
GROUP BY task, task_hash, model, method, budget, profile, protocol, primary_metric,
    higher_is_better, k"""


# Per (task protocol, model, budget, profile, method, test example): the share of the
# method's seeds that got it right (its latest rows, tuning trials left out).
# `example_outcomes` is a table the store keeps with the comparisons (one row per group,
# method and test example: the share of its seeds right). The examples on which a group's methods disagree (some get them right, others wrong),
# with how many methods got each right.
DISAGREEMENTS = """CREATE OR REPLACE VIEW disagreements AS
SELECT task, task_hash, model, budget, profile, protocol, example, any_value(gold) AS gold,
    count(*) AS n_methods,
    count(*) FILTER (WHERE share_correct >= 0.5) AS n_right,
    list(method ORDER BY method) FILTER (WHERE share_correct >= 0.5) AS right,
    list(method ORDER BY method) FILTER (WHERE share_correct < 0.5) AS wrong
FROM example_outcomes
GROUP BY task, task_hash, model, budget, profile, protocol, example
HAVING count(*) FILTER (WHERE share_correct >= 0.5) BETWEEN 1 AND count(*) - 1"""

# What a method gets wrong that its matrix's baseline method gets right (by the majority
# of seeds), per example.
LOST_TO_BASELINE = """CREATE OR REPLACE VIEW lost_to_baseline AS
SELECT m.task, m.task_hash, m.model, m.budget, m.profile, m.protocol, m.method,
    m.baseline_method,
    m.example, m.gold, m.usual_prediction AS prediction, b.usual_prediction AS baseline_prediction,
    m.share_correct, b.share_correct AS baseline_share_correct
FROM example_outcomes m
JOIN example_outcomes b ON b.task_hash = m.task_hash AND b.model = m.model
    AND b.budget = m.budget AND b.profile = m.profile AND b.example = m.example
    AND b.method = m.baseline_method AND b.protocol IS NOT DISTINCT FROM m.protocol
WHERE m.method <> m.baseline_method AND m.share_correct < 0.5 AND b.share_correct >= 0.5"""

# Where each cell's wall time went (latest attempt per cell), phase by phase in order,
# with scheduling (dispatch, worker, result to row) summed, and what the phases cover
# of the cell's total (1.0: every second attributed).
_PHASE_COLUMNS = ", ".join(phase_column(p) for p in PHASES)
_SCHEDULING = " + ".join(f"coalesce({phase_column(p)}, 0)" for p in SCHEDULING_PHASES)
_PHASE_SUM = " + ".join(f"coalesce({phase_column(p)}, 0)" for p in PHASES)
CELL_PHASES = f"""CREATE OR REPLACE VIEW cell_phases AS
SELECT cell_id, matrix, protocol, task, model, method, seed, phase, status, profile, device,
    base_dtype, model_cached, data_cached, cell_total_s, cell_wall_s, {_PHASE_COLUMNS},
    {_SCHEDULING} AS scheduling_s,
    ({_SCHEDULING}) / nullif(cell_total_s, 0) AS scheduling_share,
    ({_PHASE_SUM}) / nullif(cell_total_s, 0) AS phases_cover
FROM results
WHERE cell_total_s IS NOT NULL"""

ANALYSIS_VIEWS = [
    LEADERBOARD, PARETO, TRIALS, RANK_SWEEP, AGGREGATE, TUNING_CURVES, DISAGREEMENTS,
    LOST_TO_BASELINE, PROTOCOLS, CELL_PHASES,
]  # fmt: skip

VIEW_NAMES = (
    "results", "leaderboard", "pareto", "trials", "rank_sweep", "aggregate", "tuning_curves",
    "example_outcomes", "disagreements", "lost_to_baseline", "merging", "compression",
    "protocols", "cell_phases", "continual_results", "continual_matrix", "federated_results",
    "federated_curve",
)  # fmt: skip

# `peftbench query --view NAME`: the view's rows in a useful order, and the columns a
# terminal table shows (csv and json show every column).
VIEW_ORDER = {
    "results": "protocol, task, model, method, seed",
    "leaderboard": 'protocol, task, model, budget, profile, "rank", method',
    "pareto": "protocol, task, model, cost_axis, cost",
    "trials": "protocol, task, model, method, trial_index",
    "rank_sweep": "protocol, task, model, method_kind, sweep_param, sweep_value",
    "aggregate": "protocol, model, mean_rank",
    "tuning_curves": "protocol, task, model, method, k",
    "example_outcomes": "protocol, task, model, method, example",
    "disagreements": "protocol, task, model, example",
    "lost_to_baseline": "protocol, task, model, method, example",
    "merging": "protocol, stage_name, method, model, seed, task",
    "compression": "protocol, stage_name, model, seed, method_name, level",
    "protocols": "n_rows DESC, protocol",
    "cell_phases": "protocol, task, model, method, seed",
    "continual_results": "protocol, model, method, strategy, seed",
    "continual_matrix": "protocol, model, method, strategy, seed, stage, position",
    "federated_results": "protocol, task, model, method, aggregation, split, alpha, seed",
    "federated_curve": "protocol, task, model, method, aggregation, split, alpha, seed, round",
}
VIEW_COLUMNS = {
    "results": "protocol, task, model, method, seed, phase, status, primary_metric, val_primary, "
    "test_primary, trainable_params",
    "leaderboard": 'protocol, task, model, method, fidelity, "rank", primary_metric, n_seeds, n_failed, '
    "mean, ci_low, ci_high, ci_kind, baseline_value, vs_baseline, p_holm, p_mcnemar, "
    "vs_baseline_t, p_value, trainable_pct, stale",
    "pareto": "protocol, task, model, method, cost_axis, cost, mean, on_front, p_front",
    "trials": "protocol, task, model, method, trial_index, lr, params, status, val_score, selected",
    "rank_sweep": "protocol, task, model, method, sweep_param, sweep_value, n_seeds, mean, ci_low, "
    "ci_high, trainable_params",
    "aggregate": "protocol, model, method, n_tasks, mean_score, mean_rank, n_better, n_worse",
    "tuning_curves": "protocol, task, model, method, k, n_trials, expected_best_val, "
    "expected_best_val_std, expected_test_of_selected",
    "example_outcomes": "protocol, task, model, method, example, gold, usual_prediction, share_correct",
    "disagreements": "protocol, task, model, example, gold, n_methods, n_right, right, wrong",
    "lost_to_baseline": "protocol, task, model, method, baseline_method, example, gold, prediction, "
    "baseline_prediction",
    "merging": "protocol, stage_name, method, fidelity, seed, status, task, merged_value, "
    "own_value, normalised, stored_bytes, merge_time_s",
    "compression": "protocol, stage_name, method, fidelity, seed, status, task, level_label, "
    "sparsity, value, dense_value, normalised, latency_s, dense_latency_s, stored_bytes",
    "protocols": "protocol, n_rows, n_ok, seeds, tasks, models, profiles, budgets, tunings",
    "cell_phases": "protocol, task, model, method, seed, cell_total_s, "
    + ", ".join(phase_column(p) for p in PHASES),
    "continual_results": "protocol, model, method, strategy, seed, status, sequence, "
    "avg_accuracy, bwt, fwt, trainable_params, train_wall_s",
    "continual_matrix": "protocol, model, method, strategy, seed, stage, trained, task, value",
    "federated_results": "protocol, task, model, method, aggregation, split, alpha, seed, "
    "rounds_done, rounds, metric, validation_score, test_score, bytes_total, wall_s_total",
    "federated_curve": "protocol, task, model, method, aggregation, split, alpha, seed, round, "
    "test_score, bytes_up, bytes_down, bytes_total, round_wall_s",
}


def view_query(name: str, all_columns: bool) -> str:
    """The SELECT for a named view; `name` must be one of VIEW_NAMES (never user SQL)."""
    if name not in VIEW_NAMES:
        raise ValueError(f"unknown view {name!r}; choose one of {', '.join(VIEW_NAMES)}")
    columns = "*" if all_columns else VIEW_COLUMNS[name]
    return f"SELECT {columns} FROM {name} ORDER BY {VIEW_ORDER[name]}"
