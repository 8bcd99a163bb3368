"""Benchmark protocols in the store: naming older rows, membership, and a protocol's
budget in words.

A protocol (docs/tasks-and-fairness.md, "Protocols") fixes what decides quality: tasks and
splits, model, precision, budget, tuning rule, seeds and metric versions, never the
hardware. Every row carries the protocol it was run under; the analysis views group by
protocol, so rows of two protocols are never ranked, charted or compared together.

A cell also belongs to every protocol that planned it: two ad-hoc matrices with the same
budget share cell ids (their default protocols stay out of the id), so the second one
finds the first one's LoRA stored and skips it. `protocol_cells` records that the second
protocol planned it, and `protocol_results` (the views' source) lists the cell's latest
row once per protocol it belongs to.

The row read under a protocol carries that protocol's `baseline_method`, not the one of
whichever matrix ran the cell last: the method a protocol compares against is its
matrix's (`optimizers` compares with `full`, `lowrank` with `lora`, and both hold the
same 20-step LoRA cell). Nothing stored is rewritten: the baseline is recorded with the
membership (the attempt's own under the protocol it ran under, `protocol_baselines` for
the ones that planned it) and the view puts it on the row.
"""

from __future__ import annotations

import json
from typing import Any

from suite.specs.budget import default_protocol

# The protocol the leaderboard opens on when the store holds it (the published league);
# otherwise it opens on the protocol with the most rows.
LEAGUE_PROTOCOL = "league-v1"

# One row per protocol: what it holds, for the leaderboard's selector and `peftbench query`.
PROTOCOLS = """CREATE OR REPLACE VIEW protocols AS
SELECT protocol, count(*) AS n_rows,
    count(*) FILTER (WHERE status = 'ok') AS n_ok,
    list(DISTINCT CAST(budget AS VARCHAR) ORDER BY CAST(budget AS VARCHAR)) AS budgets,
    list(DISTINCT CAST(tuning AS VARCHAR) ORDER BY CAST(tuning AS VARCHAR))
        FILTER (WHERE tuning IS NOT NULL) AS tunings,
    list(DISTINCT seed ORDER BY seed) AS seeds,
    list(DISTINCT task ORDER BY task) AS tasks,
    list(DISTINCT model ORDER BY model) AS models,
    list(DISTINCT matrix ORDER BY matrix) AS matrices,
    list(DISTINCT profile ORDER BY profile) AS profiles,
    max(finished_at) AS newest
FROM protocol_results
WHERE coalesce(phase, 'single') <> 'trial'
GROUP BY protocol"""

# Which protocols planned which cells, beyond the one each row was run under.
PROTOCOL_CELLS = """CREATE TABLE IF NOT EXISTS protocol_cells (
    protocol VARCHAR NOT NULL, cell_id VARCHAR NOT NULL, PRIMARY KEY (protocol, cell_id))"""
# The baseline method of the protocol that planned each of those cells (schema 8). A table
# of its own, not a column of protocol_cells: a run of schema-7 code (a league run started
# before an upgrade) goes on inserting its two columns there.
PROTOCOL_BASELINES = """CREATE TABLE IF NOT EXISTS protocol_baselines (
    protocol VARCHAR NOT NULL, cell_id VARCHAR NOT NULL, baseline_method VARCHAR,
    PRIMARY KEY (protocol, cell_id))"""

# The latest row of each cell once per protocol it belongs to: the ones its attempts were
# run under, and the ones that planned it while it was stored (`protocol_cells`), with
# that protocol's baseline method (any_value skips the NULLs of memberships recorded
# before `protocol_baselines`: those rows keep their own).
PROTOCOL_RESULTS = """CREATE OR REPLACE VIEW protocol_results AS
SELECT r.* REPLACE (m.protocol AS protocol,
    coalesce(m.baseline_method, r.baseline_method) AS baseline_method)
FROM results r
JOIN (SELECT protocol, cell_id, any_value(baseline_method) AS baseline_method
      FROM (SELECT protocol, cell_id, baseline_method FROM cell_runs
            UNION ALL SELECT protocol, cell_id, b.baseline_method FROM protocol_cells
                LEFT JOIN protocol_baselines b USING (protocol, cell_id))
      GROUP BY protocol, cell_id) m USING (cell_id)"""


def join_protocol(con, planned: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Record that each (protocol, cell id) was planned, with the protocol's baseline
    method; returns the comparison scopes (task hash, model, profile) of the stored cells
    that gained a protocol or whose membership's baseline changed."""
    new = [
        p for p in dict.fromkeys(planned)
        if not con.execute(
            "SELECT 1 FROM cell_runs WHERE protocol = ? AND cell_id = ? "
            "UNION ALL SELECT 1 FROM protocol_baselines WHERE protocol = ? AND cell_id = ? "
            "AND baseline_method IS NOT DISTINCT FROM ?",
            [p[0], p[1], p[0], p[1], p[2]],
        ).fetchone()
    ]  # fmt: skip
    if not new:
        return []
    con.executemany("INSERT OR IGNORE INTO protocol_cells VALUES (?, ?)", [p[:2] for p in new])
    con.executemany("INSERT OR REPLACE INTO protocol_baselines VALUES (?, ?, ?)", new)
    rows = con.execute(
        "SELECT DISTINCT task_hash, model, profile FROM latest_results "
        "WHERE cell_id IN (SELECT unnest(?))",
        [[cell_id for _, cell_id, _ in new]],
    ).fetchall()
    return [tuple(r) for r in rows]


def fill_protocols(con) -> int:
    """Name the protocol of rows stored before protocols existed: the default a matrix
    without one gets (`<matrix>@<budget tag>`, from the row's stored matrix and budget),
    so their cells, rerun by today's code, land in the same protocol. Returns the number
    of rows named."""
    pairs = con.execute(
        "SELECT DISTINCT matrix, CAST(budget AS VARCHAR) FROM cell_runs WHERE protocol IS NULL"
    ).fetchall()
    named = 0
    for matrix, budget in pairs:
        name = default_protocol(matrix or "unnamed", _json(budget))
        named += con.execute(
            "UPDATE cell_runs SET protocol = ? WHERE protocol IS NULL "
            "AND matrix IS NOT DISTINCT FROM ? AND CAST(budget AS VARCHAR) IS NOT DISTINCT FROM ?",
            [name, matrix, budget],
        ).fetchone()[0]
    return named


def fill_posthoc_protocols(con) -> int:
    """A post-hoc row stored before protocols gets its first input's protocol (a stage
    reads the trained cells of one matrix)."""
    return con.execute(
        "UPDATE posthoc_runs p SET protocol = (SELECT any_value(c.protocol) FROM cell_runs c "
        "WHERE c.cell_id = p.input_cell_ids[1]) WHERE p.protocol IS NULL "
        "AND len(p.input_cell_ids) > 0"
    ).fetchone()[0]


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def budget_words(
    budget: dict[str, Any], tuning: dict[str, Any] | None = None, seeds: list[int] | None = None
) -> str:
    """A protocol's budget as a sentence: "3 epochs, batch 32, lr tuned over 4 trials on
    validation, 3 seeds" (the budget alone where `seeds` is None)."""
    parts = []
    if budget.get("tokens"):
        parts.append(f"{int(budget['tokens']):,} training tokens")
    elif budget.get("epochs") is not None:
        epochs = float(budget["epochs"])
        parts.append(f"{epochs:g} epoch{'s' if epochs != 1 else ''}")
    if budget.get("max_steps"):
        parts.append(f"at most {int(budget['max_steps']):,} steps")
    if budget.get("batch_size"):
        parts.append(f"batch {int(budget['batch_size'])}")
    if budget.get("max_train_samples"):
        parts.append(f"{int(budget['max_train_samples']):,} training examples")
    if budget.get("autocast"):
        parts.append(str(budget["autocast"]))
    if budget.get("length_bucket_window"):
        parts.append(f"length-bucketed ({int(budget['length_bucket_window'])} batches)")
    if seeds is None:
        return ", ".join(parts)
    if tuning:
        trials = int(tuning.get("trials", 0))
        # Each method draws from its own search space (the learning rate at least).
        parts.append(f"lr tuned over {trials} trial{'s' if trials != 1 else ''} on validation")
        if tuning.get("default_first"):
            parts[-1] += " (trial 0: each method's defaults)"
    else:
        parts.append("untuned (each method's default learning rate)")
    parts.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}")
    return ", ".join(parts)


def protocol_label(row: dict[str, Any]) -> str:
    """A `protocols` view row as people read it: the protocol's name and its budget, e.g.
    "smoke: at most 120 steps, batch 16". A matrix's default protocol drops its budget
    tag (`smoke@ec69163d`): the budget words say what the tag hashes."""
    name = str(row["protocol"]).split("@", 1)[0]
    budgets = [_json(b) for b in _items(row.get("budgets"))]
    words = budget_words(budgets[0]) if len(budgets) == 1 else ""
    return f"{name}: {words}" if words else name


def protocol_labels(rows: list[dict[str, Any]]) -> list[str]:
    """`protocol_label` of each row; two rows that would read alike (budgets differing only
    in what the words leave out, e.g. warmup) keep their stored ids in brackets."""
    labels = [protocol_label(row) for row in rows]
    return [
        f"{label} [{row['protocol']}]" if labels.count(label) > 1 else label
        for label, row in zip(labels, rows, strict=True)
    ]


def describe(row: dict[str, Any]) -> str:
    """A `protocols` view row in words; several budgets (a declared protocol run with two
    budgets by mistake) are said, not hidden."""
    budgets = [_json(b) for b in _items(row.get("budgets"))] or [{}]
    tunings = [_json(t) for t in _items(row.get("tunings"))]
    seeds = _items(row.get("seeds"))
    text = budget_words(budgets[0], tunings[0] if tunings else None, seeds)
    if len(budgets) > 1 or len(tunings) > 1:
        text += f" (warning: {len(budgets)} budgets and {len(tunings)} tuning rules stored)"
    return text


def _items(value: Any) -> list:
    """A list column as read (a list, a numpy array, or None when empty)."""
    return [] if value is None else list(value)
