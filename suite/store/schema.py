"""The results schema and views, in one place.

`cell_runs` is append-only (one row per attempt at a cell); the `results` view shows the
latest attempt of each cell with every metric as a column (`val_accuracy`,
`test_accuracy`, ...). `metrics` holds the long form; `baselines` the trivial predictor's
scores per task, so the leaderboard can draw the reference line.

`results` reads the table `latest_results`, which holds exactly what `RESULTS_SELECT`
computes (latest attempt per cell, metrics pivoted) and is kept so cell by cell as each
result is written (`refresh_latest`): computing the window and the pivot over the whole
store on every read cost seconds at a million rows. Whoever inserts into `cell_runs` or
`metrics` other than through `Store.write` calls `rebuild_latest` afterwards.
"""

from __future__ import annotations

from suite.results import PHASES, CellResult, phase_column
from suite.store.columns import Layout, create_table, layout
from suite.store.protocols import PROTOCOL_BASELINES, PROTOCOL_CELLS, PROTOCOL_RESULTS
from suite.store.references import REFERENCE_TABLE
from suite.store.views import ANALYSIS_TABLES, ANALYSIS_VIEWS
from suite.tasks.metrics import METRICS

# 7: protocol_cells and protocol_results (a cell belongs to every protocol that planned it)
# 8: protocol_baselines (a row read under a protocol has that protocol's baseline method)
SCHEMA_VERSION = 8

# The cell_runs table: the store's own columns (name, SQL type) and, by bare name, the
# columns of CellResult (suite/results.py: their types come from its fields), in the
# order of the stores already written; a field added to CellResult (or Measurements,
# Placement, Phases) and named nowhere here is appended (suite/store/columns.py).
CELL_RUN_LAYOUT: Layout = (
    ("result_id", "VARCHAR PRIMARY KEY"),
    "cell_id",
    ("run_id", "VARCHAR"),
    "status",
    "error",
    ("matrix", "VARCHAR"),
    ("method", "VARCHAR"),
    ("method_name", "VARCHAR"),
    ("method_kind", "VARCHAR"),
    ("family", "VARCHAR"),
    # What the implementation may claim, its version (a bump makes older rows stale) and
    # a hash of the source files that ran (suite/methods/source.py).
    ("fidelity", "VARCHAR"),
    ("method_version", "INTEGER"),
    "method_source_hash",
    # The hyperparameters that set the adapter's size (the method's size_params).
    ("size_params", "VARCHAR[]"),
    # The base's storage dtype and the dtype of the method's own trainable tensors.
    "base_dtype",
    "adapter_dtype",
    ("model", "VARCHAR"),
    ("task", "VARCHAR"),
    ("seed", "INTEGER"),
    ("profile", "VARCHAR"),
    ("lr", "DOUBLE"),
    ("params", "JSON"),
    ("budget", "JSON"),
    ("method_yaml", "VARCHAR"),
    ("task_yaml", "VARCHAR"),
    ("model_yaml", "VARCHAR"),
    ("task_hash", "VARCHAR"),
    ("method_hash", "VARCHAR"),
    ("model_hash", "VARCHAR"),
    ("primary_metric", "VARCHAR"),
    ("higher_is_better", "BOOLEAN"),
    ("val_primary", "DOUBLE"),
    ("test_primary", "DOUBLE"),
    ("baseline_test_primary", "DOUBLE"),
    "trainable_params",
    "adapter_params",
    "total_params",
    "peak_memory_bytes",
    "peak_memory_isolated",
    "memory_baseline_bytes",
    "cached_model_bytes",
    "train_wall_s",
    "train_steps",
    "samples_per_s",
    "step_time_median_s",
    "latency_unmerged_s",
    "latency_merged_s",
    "merge_time_s",
    "merge_max_abs_diff",
    "adapter_bytes",
    # The optimiser's state tensors (suite/train/measure.py), at their largest over the
    # training steps: also the optimiser part of the memory breakdown (mem_* columns).
    "optimizer_state_bytes",
    "final_train_loss",
    "loss_curve",
    "cell_wall_s",
    "device",
    "hostname",
    "node_id",
    "worker_pid",
    "started_at",
    ("finished_at", "TIMESTAMP"),
    ("git_sha", "VARCHAR"),
    ("git_dirty", "BOOLEAN"),
    ("versions", "JSON"),
    ("hardware", "JSON"),
    # Fairness protocol (suite/tuning.py, suite/store/views.py): the matrix's baseline
    # method, the phase of the cell ('single', 'trial' or 'final'), its tuning budget and
    # the selection (made on validation only) that produced a final cell's configuration.
    ("baseline_method", "VARCHAR"),
    ("task_type", "VARCHAR"),
    ("phase", "VARCHAR"),
    ("trial_index", "INTEGER"),
    ("tuning", "JSON"),
    ("selection", "JSON"),
    # Forgetting: the model's loss on the matrix's reference texts before and after.
    "reference_loss_before",
    "reference_loss_after",
    "forgetting_delta_loss",
    # Why a score should not be read as a quality signal (e.g. a random tiny model).
    ("note", "VARCHAR"),
    # Scheduling (suite/scheduler/): the recorded hardware profile the cell ran on, its
    # estimated training FLOP/s and that as a fraction of the profile's calibrated matmul
    # peak, a declared-vs-actual device mismatch, GPU packing, attempts, the cell's log.
    "hardware_profile_id",
    "device_mismatch",
    "device_mismatch_detail",
    "train_tokens",
    "tokens_per_s",
    "train_flops",
    "train_holdout_examples",
    # The base's storage and bytes as stored (training, inference), and the training
    # memory broken down (suite/train/memory.py).
    "base_storage",
    "base_bytes",
    "inference_base_bytes",
    "mem_frozen_weights_bytes",
    "mem_trainable_weights_bytes",
    "mem_gradients_bytes",
    "mem_activations_other_bytes",
    "achieved_flops_per_s",
    "flops_fraction_of_peak",
    "gpu_fraction",
    "attempts",
    "log_path",
    # The benchmark protocol (suite/store/protocols.py): the matrix's declared one, or
    # `<matrix>@<budget tag>`; rows of different protocols are never compared.
    ("protocol", "VARCHAR"),
    # Where the row came from: NULL for a row this store's own runs wrote; the published
    # dataset's name (suite/store/published.py) for a row loaded from one.
    ("origin", "VARCHAR"),
    # Useful work: training tokens and FLOPs counted on real tokens (padding excluded),
    # and that FLOP/s as a fraction of the calibrated peak (suite/results.py).
    "train_real_tokens",
    "train_flops_real",
    "achieved_flops_per_s_real",
    "flops_fraction_of_peak_real",
    # Where the cell's wall time went, dispatch to stored row (suite/results.py PHASES):
    # the phases add up to cell_total_s; whether model and tokenised data were cached.
    *(phase_column(p) for p in PHASES),
    "model_cached",
    "data_cached",
    "cell_total_s",
)
CELL_RUN_COLUMNS: dict[str, str] = layout(CELL_RUN_LAYOUT, CellResult)

# What a worker actually had, recorded once per worker and dtype (suite/scheduler/hardware.py).
HARDWARE_PROFILE_COLUMNS: dict[str, str] = {
    "profile_id": "VARCHAR PRIMARY KEY",
    "node_id": "VARCHAR",
    "hostname": "VARCHAR",
    "device_type": "VARCHAR",
    "device_name": "VARCHAR",
    "device_count": "INTEGER",
    "device_memory_bytes": "BIGINT",
    "driver_version": "VARCHAR",
    "cuda_version": "VARCHAR",
    "cudnn_version": "VARCHAR",
    "cpu_model": "VARCHAR",
    "cpu_cores": "INTEGER",
    "ram_bytes": "BIGINT",
    "os": "VARCHAR",
    "torch_threads": "INTEGER",
    "versions": "JSON",
    "dtype": "VARCHAR",
    "matmul_flops": "DOUBLE",
    "memory_bandwidth_bytes_s": "DOUBLE",
    "recorded_at": "VARCHAR",
}

# What makes two recordings the same machine: its stable facts only. `profile_id` hashes
# the whole recording, calibration included (measured FLOP/s and bandwidth move run to
# run), so one machine has many ids; compare these instead (verify's "same hw", the
# Hardware page's grouping). The ids stay as they are: published rows link to them.
MACHINE_KEY = (
    "device_type", "device_name", "device_count", "device_memory_bytes", "cpu_model",
    "cpu_cores", "ram_bytes", "driver_version", "cuda_version", "cudnn_version", "torch_threads",
)  # fmt: skip

TABLES = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    PROTOCOL_CELLS,
    PROTOCOL_BASELINES,
    create_table("cell_runs", CELL_RUN_COLUMNS),
    """CREATE TABLE IF NOT EXISTS metrics (
        result_id VARCHAR NOT NULL, split VARCHAR NOT NULL, metric VARCHAR NOT NULL,
        value DOUBLE, version INTEGER, higher_is_better BOOLEAN)""",
    """CREATE TABLE IF NOT EXISTS baselines (
        task VARCHAR NOT NULL, task_hash VARCHAR NOT NULL, kind VARCHAR, split VARCHAR NOT NULL,
        metric VARCHAR NOT NULL, value DOUBLE,
        PRIMARY KEY (task_hash, split, metric))""",
    # Per-example predictions of every cell, on validation and test ("trial_test" for a
    # trial), written with the cell's result: the example is its position in the split,
    # the same for every cell of the task. Numbers (class ids, values) go to *_num, text
    # (generated answers) to *_text; `correct` is pred == gold where that is defined.
    """CREATE TABLE IF NOT EXISTS predictions (
        result_id VARCHAR NOT NULL, split VARCHAR NOT NULL, example INTEGER NOT NULL,
        pred_num DOUBLE, pred_text VARCHAR, gold_num DOUBLE, gold_text VARCHAR,
        score DOUBLE, correct BOOLEAN)""",
    create_table("hardware_profiles", HARDWARE_PROFILE_COLUMNS),
    *ANALYSIS_TABLES,
    # Numbers reported in papers (suite/references/), never measured here.
    REFERENCE_TABLE,
]

_SPLIT_PREFIX = {"validation": "val", "test": "test"}


def _metric_pivot(where: str = "") -> str:
    cols = [
        f"max(value) FILTER (WHERE split = '{split}' AND metric = '{name}') AS {prefix}_{name}"
        for split, prefix in _SPLIT_PREFIX.items()
        for name in METRICS
    ]
    return f"SELECT result_id, {', '.join(cols)} FROM metrics {where} GROUP BY result_id"


def _versions(where: str = "") -> str:
    """The newest version stored per (result, metric): `metric_version` is the primary's."""
    return f"SELECT result_id, metric, max(version) AS metric_version FROM metrics {where} GROUP BY ALL"


def _latest_select(runs: str, where: str = "") -> str:
    return f"""SELECT r.*, m.* EXCLUDE (result_id), v.metric_version
    FROM {runs} r
    LEFT JOIN ({_metric_pivot(where)}) m USING (result_id)
    LEFT JOIN ({_versions(where)}) v ON v.result_id = r.result_id AND v.metric = r.primary_metric"""


# Latest attempt per cell, metrics pivoted, and the version of its primary metric.
RESULTS_SELECT = (
    _latest_select("cell_runs")
    + "\n    QUALIFY row_number() OVER ("
    + "PARTITION BY r.cell_id ORDER BY r.finished_at DESC, r.result_id DESC) = 1"
)

# The same for one attempt: equality on result_id, so each part is an index lookup.
_ONE_RESULT_SELECT = _latest_select(
    "(SELECT * FROM cell_runs WHERE result_id = $rid)", "WHERE result_id = $rid"
)


# Point lookups every write makes: a cell's attempts, its latest row (indexed where
# rebuild_latest makes the table), and one attempt's metrics.
INDEXES = [
    "CREATE INDEX IF NOT EXISTS cell_runs_by_cell ON cell_runs (cell_id)",
    "CREATE INDEX IF NOT EXISTS metrics_by_result ON metrics (result_id)",
    "CREATE INDEX IF NOT EXISTS predictions_by_result ON predictions (result_id)",
]


def rebuild_latest(con) -> None:
    """(Re)compute `latest_results` from `cell_runs` and `metrics` in full."""
    con.execute(f"CREATE OR REPLACE TABLE latest_results AS {RESULTS_SELECT}")
    con.execute("CREATE INDEX latest_results_by_cell ON latest_results (cell_id)")


def refresh_latest(con, cell_id: str) -> None:
    """Bring one cell's row of `latest_results` up to date (after a write to that cell)."""
    latest = con.execute(
        "SELECT result_id FROM cell_runs WHERE cell_id = $cell "
        "ORDER BY finished_at DESC, result_id DESC LIMIT 1",
        {"cell": cell_id},
    ).fetchone()
    con.execute("DELETE FROM latest_results WHERE cell_id = $cell", {"cell": cell_id})
    if latest is not None:
        con.execute(f"INSERT INTO latest_results BY NAME {_ONE_RESULT_SELECT}", {"rid": latest[0]})


def latest_is_current(con) -> bool:
    """Whether `latest_results` exists with the current columns and one row per cell."""
    have = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'latest_results' ORDER BY ordinal_position"
        ).fetchall()
    ]
    if not have:
        return False
    want = [d[0] for d in con.execute(f"DESCRIBE {RESULTS_SELECT}").fetchall()]
    if have != want:
        return False
    n_latest, n_cells = con.execute(
        "SELECT (SELECT count(*) FROM latest_results), (SELECT count(DISTINCT cell_id) FROM cell_runs)"
    ).fetchone()
    return n_latest == n_cells


VIEWS = [
    "CREATE OR REPLACE VIEW results AS SELECT * FROM latest_results",
    PROTOCOL_RESULTS,
    # leaderboard, pareto, trials, rank_sweep, aggregate: built on `protocol_results`.
    *ANALYSIS_VIEWS,
]
