"""The run summary's table of continual cells: ACC, BWT, FWT and each accuracy matrix."""

from __future__ import annotations

from rich.table import Table


def _fmt(value, sign: bool = False) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:+.4f}" if sign else f"{value:.4f}"


def continual_table(store, matrix: str | None, cell_ids: list[str]) -> Table:
    """One row per cell; the matrix column shows R row by row (stage 0: the baseline)."""
    runs = store.query(
        "SELECT cell_id, method, strategy, model, seed, status, avg_accuracy, bwt, fwt, "
        "sequence FROM continual_results WHERE cell_id IN (SELECT unnest(?)) "
        "ORDER BY method, strategy, model, seed",
        [cell_ids],
    )
    scores = store.query(
        "SELECT cell_id, stage, position, value FROM continual_matrix "
        "WHERE cell_id IN (SELECT unnest(?)) ORDER BY stage, position",
        [cell_ids],
    )
    table = Table(title="continual results" + (f" (matrix {matrix})" if matrix else ""))
    for col in ("method", "strategy", "model", "seed", "status", "ACC", "BWT", "FWT", "R"):
        table.add_column(col, overflow="fold")
    for r in runs.to_dict("records"):
        mine = scores[scores.cell_id == r["cell_id"]]
        lines = [
            f"{'b' if stage == 0 else f'after {stage}'}: " + " ".join(_fmt(v) for v in group.value)
            for stage, group in mine.groupby("stage")
        ]
        table.add_row(
            r["method"], r["strategy"], r["model"], str(r["seed"]), r["status"],
            _fmt(r["avg_accuracy"]), _fmt(r["bwt"], True), _fmt(r["fwt"], True),
            "\n".join(lines) or "-",
        )  # fmt: skip
    return table
