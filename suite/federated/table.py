"""The run summary's table of federated runs: where each got to, and at what cost."""

from __future__ import annotations

from rich.table import Table


def _fmt(value, digits: int = 4) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:.{digits}f}"


def federated_table(store, matrix: str | None, fed_runs: list[str]) -> Table:
    """One row per run: its last stored round's scores, the bytes and seconds so far."""
    runs = store.query(
        "SELECT method, aggregation, split, alpha, dp, model, task, seed, rounds_done, rounds, "
        "metric, validation_score, test_score, bytes_total, wall_s_total "
        "FROM federated_results WHERE fed_run IN (SELECT unnest(?)) "
        "ORDER BY task, model, method, split, alpha, aggregation, seed",
        [fed_runs],
    )
    table = Table(title="federated results" + (f" (matrix {matrix})" if matrix else ""))
    for col in ("method", "rule", "split", "dp", "model", "task", "seed", "rounds", "metric",
                "validation", "test", "MB", "wall s"):  # fmt: skip
        table.add_column(col, overflow="fold")
    for r in runs.to_dict("records"):
        split = (
            r["split"]
            if r["alpha"] != r["alpha"] or r["alpha"] is None
            else f"{r['split']}({r['alpha']:g})"
        )
        table.add_row(
            r["method"], r["aggregation"], split, "yes" if r["dp"] else "-", r["model"], r["task"],
            str(r["seed"]), f"{r['rounds_done']}/{r['rounds']}", r["metric"] or "-",
            _fmt(r["validation_score"]), _fmt(r["test_score"]), _fmt(r["bytes_total"] / 1e6, 2),
            _fmt(r["wall_s_total"], 1),
        )  # fmt: skip
    return table
