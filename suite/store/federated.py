"""The federated part of the store: every round of every federated run, and its views.

- `federated_rounds`: append-only, one row per attempt at a round (suite/federated/):
  its run (`fed_run`: the trained cell and the federated spec), the split, the rule,
  the global adapter's validation and test scores after the round, the bytes sent down
  (global adapter to each client) and up (each client's trained tensors), the round's
  wall time and CPU time (its clients' and its server's, measured: they ran in several
  processes at once), the stored adapter's path and sha256, provenance. A round counts as stored
  once its row says ok; the next run of the matrix starts after the last such round.

Views (the leaderboard's Federated page, `peftbench query`): `federated_curve` (the
latest attempt of each round of each run, with the bytes communicated up to it) and
`federated_results` (each run's last stored round: where it got to, at what cost).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from suite.artifacts import federated_root
from suite.results import CellReport
from suite.store import columns
from suite.store.export import TrackExport, distinct
from suite.track_results import FederatedMeasured, FederatedMeasurements

FEDERATED_ROUND_LAYOUT: columns.Layout = columns.attempt_layout(
    identity=("fed_run", "round"),
    own=(
        ("params", "JSON"),
        ("model", "VARCHAR"),
        ("task", "VARCHAR"),
        ("seed", "INTEGER"),
        ("protocol", "VARCHAR"),
        ("budget", "JSON"),
        ("aggregation", "VARCHAR"),
        ("rule_fidelity", "VARCHAR"),
        ("split", "VARCHAR"),
        ("alpha", "DOUBLE"),
        ("n_clients", "INTEGER"),
        ("rounds", "INTEGER"),
        ("local_steps", "INTEGER"),
        ("dp", "JSON"),
        ("spec", "JSON"),
    ),
    # origin: NULL for a row this store's runs wrote, else the published dataset's name
    # (suite/store/published.py), as in cell_runs; method_version: as in cell_runs.
    tail=(("log_path", "VARCHAR"), ("method_version", "INTEGER"), ("origin", "VARCHAR")),
)
FEDERATED_ROUND_COLUMNS: dict[str, str] = columns.layout(
    FEDERATED_ROUND_LAYOUT, FederatedMeasurements
)

FEDERATED_TABLES = [columns.create_table("federated_rounds", FEDERATED_ROUND_COLUMNS)]
# The latest attempt of each round (failed ones too).
_LATEST_ROUNDS = """SELECT * FROM federated_rounds
    QUALIFY row_number() OVER (PARTITION BY cell_id ORDER BY finished_at DESC, result_id DESC) = 1"""
_CURVE = f"""CREATE OR REPLACE VIEW federated_curve AS
WITH latest AS ({_LATEST_ROUNDS})
SELECT fed_run, matrix, protocol, model, task, method, fidelity, seed, aggregation,
    rule_fidelity, split, alpha,
    n_clients, rounds, local_steps, dp, round, status, metric, validation_score, test_score,
    clients, bytes_up, bytes_down,
    sum(coalesce(bytes_up, 0) + coalesce(bytes_down, 0))
        OVER (PARTITION BY fed_run ORDER BY round) AS bytes_total,
    cell_wall_s AS round_wall_s,
    sum(cell_wall_s) OVER (PARTITION BY fed_run ORDER BY round) AS wall_s_total,
    clients_cpu_s, server_cpu_s,
    label_skew, client_sizes, client_final_losses, state_path, origin
FROM latest WHERE status = 'ok'"""

_RESULTS = """CREATE OR REPLACE VIEW federated_results AS
SELECT * EXCLUDE (client_final_losses, state_path), round AS rounds_done,
    round = rounds AS complete
FROM federated_curve
QUALIFY row_number() OVER (PARTITION BY fed_run ORDER BY round DESC) = 1"""

FEDERATED_VIEWS = [_CURVE, _RESULTS]


def _describe(runs) -> dict[str, Any]:
    return {
        "runs": int(runs["fed_run"].nunique()),
        "tasks": distinct(runs["task"]),
        "aggregations": runs.groupby("aggregation")["rule_fidelity"].first().astype(str).to_dict(),
    }


# A federated protocol as a publication (suite/store/published.py): the latest attempt of
# every round of every run, failed ones too. The pages read the majority class from the
# rounds themselves (`baseline_test_score`), so no baselines rows go with them.
FEDERATED_EXPORT = TrackExport(
    track="federated",
    runs="federated_rounds",
    columns=FEDERATED_ROUND_COLUMNS,
    latest=f"SELECT result_id FROM ({_LATEST_ROUNDS}) WHERE protocol = ? ORDER BY fed_run, round",
    unit="rounds",
    described=("fed_run", "task", "aggregation", "rule_fidelity"),
    describe=_describe,
    # An unfinished run's last stored adapter, so that a store loading the folder goes on
    # from the round after it (a complete run needs none: suite/federated/plan.py).
    files="SELECT fed_run || '/' || parse_filename(state_path), state_path, state_sha256 "
    "FROM federated_rounds JOIN ids USING (result_id) WHERE status = 'ok' "
    "AND state_path IS NOT NULL QUALIFY row_number() OVER (PARTITION BY fed_run "
    "ORDER BY round DESC) = 1 AND round < rounds",
    file_root=federated_root,
    # A round's clients train in parallel, each in its own process with its own threads:
    # its wall time x the round's threads would count them once at most.
    cpu_seconds=("server_cpu_s", "clients_cpu_s"),
)


def federated_attempt(
    cell, report: CellReport, provenance: dict[str, Any], log_path: str | None
) -> columns.Attempt:
    """The federated_rounds row of one report (a timeout or a crashed worker delivers a
    plain outcome: then the row has only the round's identity)."""
    measured = report.measured
    ok = isinstance(measured, FederatedMeasured)
    m = measured.measurements if ok else FederatedMeasurements()
    base, spec = cell.cell, cell.spec
    row = {
        **m.model_dump(),
        **columns.attempt_fields(cell.cell_id, report, provenance, log_path),
        **columns.method_fields(base.method),
        "fed_run": cell.fed_run, "round": cell.round, "matrix": base.matrix,
        "model": base.model.name, "task": base.task.name,
        "seed": base.seed, "protocol": base.protocol_name, "budget": base.budget.model_dump_json(),
        "aggregation": spec.aggregation, "rule_fidelity": cell.rule_fidelity,
        "split": spec.split.kind,
        "alpha": getattr(spec.split, "alpha", None), "n_clients": spec.clients,
        "rounds": spec.rounds, "local_steps": spec.local_steps,
        "dp": spec.dp.model_dump_json() if spec.dp else None, "spec": spec.model_dump_json(),
        "validation_metrics": json.dumps(m.validation_metrics) if m.validation_metrics else None,
        "test_metrics": json.dumps(m.test_metrics) if m.test_metrics else None,
    }  # fmt: skip
    return columns.Attempt("federated_rounds", FEDERATED_ROUND_COLUMNS, row)


def stored_rounds(store, fed_runs: list[str], since: datetime | None = None) -> dict[str, set[int]]:
    """The rounds each run has stored ok (since `since`, when given: a --rerun counts
    only the rounds it ran itself)."""
    if not fed_runs or not store.path.exists():
        return {}
    with store.connect(read_only=True) as con:
        if not columns.existing(con, "federated_rounds"):
            return {}
        rows = con.execute(
            "SELECT fed_run, round FROM federated_rounds WHERE status = 'ok' "
            "AND fed_run IN (SELECT unnest(?)) AND (CAST(? AS TIMESTAMP) IS NULL "
            "OR finished_at >= CAST(? AS TIMESTAMP))",
            [fed_runs, since, since],
        ).fetchall()
    out: dict[str, set[int]] = {}
    for run, k in rows:
        out.setdefault(run, set()).add(k)
    return out
