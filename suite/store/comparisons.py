"""The tables the analysis views read statistics from, filled by the store.

The views need no user functions on a read-only connection, so the store keeps, for the
comparison group of every result it writes (task protocol, model, budget, profile,
benchmark protocol):

- `comparisons`: one row per method: its bootstrap interval over test examples (and seeds
  where there are 3 or more: suite/itemstats.py), and its comparison with the matrix's
  baseline method: the paired bootstrap over examples and seeds, the exact sign-flip
  (McNemar) test for accuracies, Holm's correction over the group's methods of the
  exact test where there is one (else the bootstrap's p), and the seed-level paired
  t-test with its n (suite/stats.py);
- `pareto_noise`: each method's probability of being on the Pareto front of quality
  against each cost, over the bootstrap replicates of quality (costs at their medians).
  The group's one set of draws (keyed by the group) serves all three, so every method's
  replicate b saw the same test examples;
- `t_critical`: Student's t critical values, for the seed-level t-intervals.

Rows without stored predictions (older stores) get the seed-level columns only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from suite import itemstats
from suite.stats import T_TABLE_MAX_DF, paired_test
from suite.store.columns import insert_rows

COMPARISON_COLUMNS = {
    "task_hash": "VARCHAR NOT NULL", "model": "VARCHAR NOT NULL",
    "method": "VARCHAR NOT NULL", "method_hash": "VARCHAR NOT NULL",
    "budget": "VARCHAR NOT NULL", "profile": "VARCHAR NOT NULL",
    "baseline_method": "VARCHAR", "baseline_method_hash": "VARCHAR",
    # Seed level: the paired t-test over common seeds.
    "n_pairs": "INTEGER", "mean_diff": "DOUBLE", "t_stat": "DOUBLE", "p_value": "DOUBLE",
    "vs_baseline_t": "VARCHAR",
    # Item level: the method's own interval, then its paired comparison.
    "n_examples": "INTEGER", "ci_kind": "VARCHAR", "boot_ci_low": "DOUBLE",
    "boot_ci_high": "DOUBLE", "diff": "DOUBLE", "diff_low": "DOUBLE", "diff_high": "DOUBLE",
    "p_boot": "DOUBLE", "p_holm": "DOUBLE", "mcnemar_b": "INTEGER", "mcnemar_c": "INTEGER",
    "p_mcnemar": "DOUBLE", "vs_baseline": "VARCHAR",
    # The p-value Holm corrects (p_mcnemar for accuracies, else p_boot) and its test.
    "p_test": "DOUBLE", "holm_test": "VARCHAR",
    "protocol": "VARCHAR",
}  # fmt: skip
PARETO_NOISE_COLUMNS = {
    "task_hash": "VARCHAR NOT NULL", "model": "VARCHAR NOT NULL",
    "method": "VARCHAR NOT NULL", "method_hash": "VARCHAR NOT NULL",
    "budget": "VARCHAR NOT NULL", "profile": "VARCHAR NOT NULL",
    "cost_axis": "VARCHAR NOT NULL", "p_front": "DOUBLE", "protocol": "VARCHAR",
}  # fmt: skip
EXAMPLE_COLUMNS = {
    "task": "VARCHAR", "task_hash": "VARCHAR NOT NULL", "model": "VARCHAR NOT NULL",
    "method": "VARCHAR NOT NULL", "method_hash": "VARCHAR NOT NULL",
    "budget": "VARCHAR NOT NULL", "profile": "VARCHAR NOT NULL", "baseline_method": "VARCHAR",
    "example": "INTEGER NOT NULL", "share_correct": "DOUBLE", "n_seeds": "INTEGER",
    "gold": "VARCHAR", "usual_prediction": "VARCHAR", "protocol": "VARCHAR",
}  # fmt: skip
# The cost axes of the pareto view (suite/store/views.py COST_AXES), at their medians.
COSTS = ("trainable_params", "peak_memory_bytes", "train_wall_s", "latency_unmerged_s",
         "adapter_bytes", "base_bytes", "training_memory_bytes")  # fmt: skip
# Training memory: what training holds beyond the frozen base (suite/train/memory.py):
# trainable weights (and fp32 masters), gradients, optimiser state, activations and the
# rest of the measured peak. Base memory (base_bytes) is the base as stored.
TRAINING_MEMORY_SQL = (
    "(mem_trainable_weights_bytes + mem_gradients_bytes + optimizer_state_bytes"
    " + mem_activations_other_bytes)"
)
COST_SQL = {name: name for name in COSTS} | {"training_memory_bytes": TRAINING_MEMORY_SQL}


def _ddl(name: str, columns: dict[str, str]) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ("
        + ", ".join(f"{k} {v}" for k, v in columns.items())
        + ")"
    )


TABLES = [
    "CREATE TABLE IF NOT EXISTS t_critical (df INTEGER PRIMARY KEY, t975 DOUBLE NOT NULL)",
    # Each metric's range (suite/tasks/metrics.py): seed-level t-intervals are clipped to it.
    "CREATE TABLE IF NOT EXISTS metric_ranges (metric VARCHAR PRIMARY KEY, low DOUBLE, high DOUBLE)",
    _ddl("comparisons", COMPARISON_COLUMNS),
    _ddl("pareto_noise", PARETO_NOISE_COLUMNS),
    # Per group, method and test example: the share of the method's seeds that got it
    # right, the gold answer and the prediction most seeds made (read by the agreement
    # views; kept at write time, so a page never aggregates the predictions).
    _ddl("example_outcomes", EXAMPLE_COLUMNS),
]
DERIVED = {"comparisons": COMPARISON_COLUMNS, "pareto_noise": PARETO_NOISE_COLUMNS,
           "example_outcomes": EXAMPLE_COLUMNS}  # fmt: skip


def ensure_tables(con) -> bool:
    """Create the derived tables, recreating any whose columns are out of date (they
    are recomputed from the results); True when something was recreated."""
    recreated = False
    for name, columns in DERIVED.items():
        have = [r[0] for r in con.execute(
            "SELECT column_name, table_type FROM information_schema.columns "
            "JOIN information_schema.tables USING (table_name) WHERE table_name = ? "
            "ORDER BY ordinal_position", [name]).fetchall()]  # fmt: skip
        kinds = {r[0] for r in con.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()}  # fmt: skip
        if "VIEW" in kinds:  # an earlier version kept it as a view
            con.execute(f"DROP VIEW {name}")
            recreated = True
        elif have and have != list(columns):
            con.execute(f"DROP TABLE {name}")  # names from this module only
            recreated = True
    for ddl in TABLES:
        con.execute(ddl)
    return recreated


def fill_t_table(con) -> None:
    """Fill `t_critical` once (df 1..T_TABLE_MAX_DF; larger df use the normal 1.96) and
    `metric_ranges` from the metrics' declared ranges."""
    from suite.tasks.metrics import METRIC_RANGES

    con.executemany(
        "INSERT OR REPLACE INTO metric_ranges VALUES (?, ?, ?)",
        [(name, low, high) for name, (low, high) in METRIC_RANGES.items()],
    )
    if con.execute("SELECT count(*) FROM t_critical").fetchone()[0]:
        return
    from scipy.stats import t

    rows = [(df, float(t.ppf(0.975, df))) for df in range(1, T_TABLE_MAX_DF + 1)]
    con.executemany("INSERT INTO t_critical VALUES (?, ?)", rows)


_ROWS = f"""
SELECT task_hash, model, method, method_hash, CAST(budget AS VARCHAR), profile,
       baseline_method, seed, test_primary, higher_is_better, primary_metric, result_id,
       task, protocol, {", ".join(COST_SQL[c] for c in COSTS)}
FROM protocol_results
WHERE status = 'ok' AND coalesce(phase, 'single') <> 'trial' AND test_primary IS NOT NULL"""


@dataclass
class MethodRuns:
    """One method (label and configuration) of a group: its seeds' results."""

    base_label: str | None
    higher_is_better: bool
    metric: str
    task: str = ""
    scores: dict[int, float] = field(default_factory=dict)
    results: dict[int, str] = field(default_factory=dict)
    costs: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def refresh_comparisons(con, scope: tuple[str, str, str] | None = None) -> int:
    """Recompute every method's interval and comparison; returns the comparison rows.

    Groups are (task protocol, model, budget, profile, benchmark protocol); within one,
    the baseline is the method whose label is the rows' `baseline_method` (the
    configuration with most seeds if several share the label). `scope` = (task_hash, model, profile) limits the refresh
    to what one new result can change, so a write costs one group, not the table.
    """
    where, params = (
        (" AND task_hash = ? AND model = ? AND profile = ?", list(scope)) if scope else ("", [])
    )
    groups: dict[tuple, dict[tuple, MethodRuns]] = defaultdict(dict)
    for row in con.execute(_ROWS + where, params).fetchall():
        (
            task_hash,
            model,
            method,
            mhash,
            budget,
            profile,
            base,
            seed,
            value,
            hib,
            metric,
            rid,
            task,
            protocol,
        ) = row[:14]
        runs = groups[(task_hash, model, budget, profile, protocol)].setdefault(
            (method, mhash), MethodRuns(base, bool(hib), metric, task)
        )
        runs.scores[seed], runs.results[seed] = value, rid
        for name, cost in zip(COSTS, row[14:], strict=True):
            if cost is not None:
                runs.costs[name].append(float(cost))
    found = _predictions(
        con, [r for g in groups.values() for m in g.values() for r in m.results.values()]
    )
    comparisons, fronts, examples = [], [], []
    for key, methods in groups.items():
        rows, front = _group_rows(key, methods, found)
        comparisons += rows
        fronts += front
        examples += _example_rows(key, methods, found)
    for table in DERIVED:  # names from this module only
        con.execute(f"DELETE FROM {table} WHERE true" + where, params)
    _insert_examples(con, examples)
    insert_rows(con, "comparisons", COMPARISON_COLUMNS, comparisons)
    if fronts:
        con.executemany(f"INSERT INTO pareto_noise VALUES ({', '.join('?' * 9)})", fronts)
    return len(comparisons)


def _predictions(con, result_ids: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(pred, gold) per result on the test split, in example order."""
    if not result_ids:
        return {}
    frame = con.execute(
        "SELECT result_id, pred_num, pred_text, gold_num, gold_text FROM predictions "
        "WHERE split = 'test' AND result_id IN (SELECT unnest(?)) ORDER BY result_id, example",
        [result_ids],
    ).df()
    out = {}
    for rid, part in frame.groupby("result_id", sort=False):
        text = part["gold_text"].notna().any()
        pred = part["pred_text" if text else "pred_num"].to_numpy()
        gold = part["gold_text" if text else "gold_num"].to_numpy()
        out[rid] = (pred.astype(object), gold.astype(object)) if text else (pred, gold)
    return out


def _outcomes(runs: MethodRuns, found) -> itemstats.Outcomes | None:
    if not all(rid in found for rid in runs.results.values()):
        return None
    pred = {s: found[rid][0] for s, rid in runs.results.items()}
    gold = {s: found[rid][1] for s, rid in runs.results.items()}
    if len({len(g) for g in gold.values()}) != 1:
        return None
    if next(iter(gold.values())).dtype != object:  # numbers: class ids or values
        pred = {s: _as_labels(p, runs.metric) for s, p in pred.items()}
        gold = {s: _as_labels(g, runs.metric) for s, g in gold.items()}
    return itemstats.Outcomes(runs.metric, pred, gold)


def _as_labels(values: np.ndarray, metric: str) -> np.ndarray:
    """Class ids back to integers for class metrics (stored as doubles)."""
    values = values.astype(float)
    if metric in ("mse", "pearson", "spearman"):
        return values
    return values.astype(int)


def _group_rows(key, methods: dict[tuple, MethodRuns], found) -> tuple[list[dict], list[tuple]]:
    """The comparison rows and Pareto-under-noise rows of one group."""
    task_hash, model, budget, profile, protocol = key
    outcomes = {mk: _outcomes(runs, found) for mk, runs in methods.items()}
    intervals, compared = _group_bootstrap(key, methods, outcomes)
    rows = []
    for (method, mhash), runs in methods.items():
        base = _baseline(methods, runs.base_label)
        row = {"task_hash": task_hash, "model": model, "method": method, "method_hash": mhash,
               "budget": budget, "profile": profile, "baseline_method": runs.base_label,
               "baseline_method_hash": base[1] if base else None,
               "protocol": protocol}  # fmt: skip
        row |= _seed_level(method, runs, methods, base)
        row |= _item_level((method, mhash), runs, intervals, compared.get((method, mhash)))
        rows.append(row)
    _correct(rows, methods)
    return rows, _fronts(key, methods, intervals)


def _group_bootstrap(key, methods: dict[tuple, MethodRuns], outcomes) -> tuple[dict, dict]:
    """Intervals and comparisons of the group's methods with predictions, from the
    group's one set of draws (suite/itemstats.py `group_statistics`)."""
    present = {mk: o for mk, o in outcomes.items() if o is not None}
    baselines = {}
    for mk in present:
        base = _baseline(methods, methods[mk].base_label)
        if mk[0] != methods[mk].base_label and base in present:
            baselines[mk] = base
    # The draws' seed: the group without its protocol (key[4]), so a store's intervals do
    # not move when its rows gain their protocol on upgrade.
    return itemstats.group_statistics("|".join(map(str, key[:4])), present, baselines)


def _baseline(methods: dict[tuple, MethodRuns], label: str | None) -> tuple | None:
    candidates = [mk for mk in methods if mk[0] == label]
    if not candidates:
        return None
    return max(candidates, key=lambda mk: (len(methods[mk].scores), mk[1]))


def _seed_level(method: str, runs: MethodRuns, methods, base) -> dict:
    if base is None or method == runs.base_label:
        return {"vs_baseline_t": "baseline" if method == runs.base_label else None}
    test = paired_test(runs.scores, methods[base].scores)
    return {"n_pairs": test.n_pairs, "mean_diff": test.mean_diff, "t_stat": test.t_stat,
            "p_value": test.p_value, "vs_baseline_t": test.verdict(runs.higher_is_better)}  # fmt: skip


def _item_level(mk, runs: MethodRuns, intervals, cmp: itemstats.Comparison | None) -> dict:
    out: dict = {}
    if mk in intervals:
        iv = intervals[mk]
        out |= {"n_examples": iv.n_examples, "ci_kind": iv.kind, "boot_ci_low": iv.low,
                "boot_ci_high": iv.high}  # fmt: skip
    if mk[0] == runs.base_label:
        return out | {"vs_baseline": "baseline"}
    if cmp is None:
        return out
    return out | {"diff": cmp.diff, "diff_low": cmp.diff_low, "diff_high": cmp.diff_high,
                  "p_boot": cmp.p_boot, "mcnemar_b": cmp.mcnemar_b, "mcnemar_c": cmp.mcnemar_c,
                  "p_mcnemar": cmp.p_mcnemar, "p_test": cmp.p_test,
                  "holm_test": cmp.test}  # fmt: skip


def _correct(rows: list[dict], methods: dict[tuple, MethodRuns]) -> None:
    """Holm over the group's comparisons with each baseline; the verdict from it."""
    by_base: dict = defaultdict(list)
    for row in rows:
        if row.get("p_test") is not None:
            by_base[row["baseline_method"]].append(row)
    for compared in by_base.values():
        for row, adjusted in zip(
            compared, itemstats.holm([r["p_test"] for r in compared]), strict=True
        ):
            hib = methods[(row["method"], row["method_hash"])].higher_is_better
            row["p_holm"] = adjusted
            row["vs_baseline"] = itemstats.verdict(row["diff"], adjusted, hib)


def _fronts(key, methods: dict[tuple, MethodRuns], intervals) -> list[tuple]:
    if not intervals:
        return []
    hib = next(iter(methods.values())).higher_is_better
    samples = {mk: iv.samples for mk, iv in intervals.items()}
    out = []
    for axis in COSTS:
        costs = {mk: float(np.median(methods[mk].costs[axis])) if methods[mk].costs[axis] else None
                 for mk in samples}  # fmt: skip
        for (method, mhash), p in itemstats.front_probability(samples, costs, hib).items():
            out.append((key[0], key[1], method, mhash, key[2], key[3], axis, p, key[4]))
    return out


def _example_rows(key, methods: dict[tuple, MethodRuns], found) -> list[dict]:
    """Per method and test example: the share of seeds right, gold, the usual prediction."""
    from collections import Counter

    task_hash, model, budget, profile, protocol = key
    rows = []
    for (method, mhash), runs in methods.items():
        outcomes = _outcomes(runs, found)
        if outcomes is None:
            continue
        seeds = outcomes.seeds
        right = np.mean([outcomes.correct(s) for s in seeds], axis=0)
        gold = outcomes.gold[seeds[0]]
        for example in range(len(gold)):
            usual = Counter(_shown(outcomes.pred[s][example]) for s in seeds).most_common(1)[0][0]
            rows.append({"task": runs.task, "task_hash": task_hash, "model": model,
                         "method": method, "method_hash": mhash, "budget": budget,
                         "profile": profile, "baseline_method": runs.base_label,
                         "example": example, "share_correct": float(right[example]),
                         "n_seeds": len(seeds), "gold": _shown(gold[example]),
                         "usual_prediction": usual, "protocol": protocol})  # fmt: skip
    return rows


def _shown(value) -> str:
    """A stored answer as text: class ids without a trailing .0."""
    if isinstance(value, str):
        return value
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _insert_examples(con, rows: list[dict]) -> None:
    if not rows:
        return
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(EXAMPLE_COLUMNS))
    con.register("new_examples", frame)
    try:
        con.execute("INSERT INTO example_outcomes BY NAME SELECT * FROM new_examples")
    finally:
        con.unregister("new_examples")
