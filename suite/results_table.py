"""The results table `peftbench run` and `peftbench table` print: one row per method x
task (x model) with its seeds pooled, fitting an 80-column terminal; `--wide` adds the
cost columns.

The score and its interval are the leaderboard view's (suite/store/views.py: the
bootstrap over test examples, and seeds where there are 3 or more), so the terminal and
the leaderboard never disagree; the status column counts the group's cells."""

from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Group
from rich.table import Table

from suite.listing import _mb, _missing, _ms, _records

# The per-cell columns read from `results`; the pooled score comes from `leaderboard`.
_CELL_SQL = (
    "SELECT cell_id, protocol, profile, method, task, model, seed, status, primary_metric, test_primary, "
    "baseline_test_primary, trainable_params, total_params, peak_memory_bytes, "
    "train_wall_s, latency_unmerged_s, latency_merged_s FROM results {where} "
    "ORDER BY task, model, method, seed"
)
_POOLED_SQL = "SELECT cell_ids, mean, ci_low, ci_high, ci_kind, n_seeds FROM leaderboard"


@dataclass
class Column:
    header: str
    wide_only: bool = False
    # Names and other words may fold onto a second line; numbers never split.
    folds: bool = False


COLUMNS = [
    Column("method", folds=True),
    Column("task", folds=True),
    Column("seeds"),
    Column("score"),  # headed by the metric's name when every row shares one
    Column("trainable"),
    Column("status", folds=True),
    Column("CI over", wide_only=True),
    Column("peak memory", wide_only=True),
    Column("train time", wide_only=True),
    Column("latency unmerged/merged", wide_only=True),
]


def results_table(
    store, matrix: str | None, cell_ids: list[str] | None = None, wide: bool = False
) -> Group:
    """The reported cells (tuning trials are scored on validation only), or just
    `cell_ids` (a matrix's cells, whichever matrix stored them first), pooled over seeds:
    one table per model and hardware profile (so neither takes a column)."""
    where = "WHERE coalesce(phase, 'single') <> 'trial'"
    params: list = []
    if cell_ids is not None:
        where, params = where + " AND cell_id IN (SELECT unnest(?))", [cell_ids]
    cells = _records(store.query(_CELL_SQL.format(where=where), params))
    groups = _group(cells)
    pooled = _pooled(store)
    metrics = {c["primary_metric"] for c in cells}
    rows = [_row(group, pooled, len(metrics) > 1) for group in groups]
    title = "peftbench results" + (f" (matrix {matrix})" if matrix else "")
    sections: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        sections.setdefault(_where(row), []).append(row)
    tables = [
        _table(f"{title}: {where}", part, metrics, wide) for where, part in sections.items()
    ] or [_table(title, [], metrics, wide)]
    tables[-1].caption = _caption(groups)
    return Group(*tables)


def _table(title: str, rows: list[dict[str, str]], metrics: set[str], wide: bool) -> Table:
    shown = [c for c in COLUMNS if wide or not c.wide_only]
    # No vertical rules and one space between columns: the essential ones fit 80.
    table = Table(
        title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False,
    )  # fmt: skip
    for column in shown:
        header = column.header
        if header == "score" and len(metrics) == 1:
            header = f"{next(iter(metrics))} [95% CI]"
        longest = max((len(r[column.header]) for r in rows), default=0)
        table.add_column(
            header,
            overflow="fold",
            no_wrap=not (column.folds or wide),
            # Names stay whole up to a point; the status may fold at its comma.
            min_width=min(longest, 14) if column.header in ("method", "task") else None,
        )
    for row in rows:
        table.add_row(*[row[c.header] for c in shown])
    return table


def _where(row: dict[str, str]) -> str:
    return f"{row['model']} on {row['profile']}"


def _group(cells: list[dict]) -> list[list[dict]]:
    """Cells of one protocol, model, task and method, in the query's order."""
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        key = (cell["model"], cell["profile"], cell["protocol"], cell["task"], cell["method"])
        groups.setdefault(key, []).append(cell)
    return [groups[key] for key in sorted(groups, key=lambda k: tuple(str(x) for x in k[:2]))]


def _pooled(store) -> dict[str, dict]:
    """The leaderboard's pooled row of each stored ok cell, by cell id."""
    try:
        rows = _records(store.query(_POOLED_SQL))
    except Exception:  # noqa: BLE001 - a store without the view: scores without intervals
        return {}
    return {cid: row for row in rows for cid in _listed(row["cell_ids"])}


def _row(group: list[dict], pooled: dict[str, dict], name_metric: bool) -> dict[str, str]:
    first = group[0]
    ok = [c for c in group if c["status"] == "ok"]
    pool = next((pooled[c["cell_id"]] for c in ok if c["cell_id"] in pooled), None)
    score = _score(pool, ok)
    if name_metric and score != "-":
        score = f"{first['primary_metric']} {score}"
    return {
        "method": first["method"],
        "task": first["task"],
        "model": first["model"],
        "profile": first["profile"],
        "seeds": _seeds([c["seed"] for c in group]),
        "score": score,
        "trainable": _trainable(first["trainable_params"], first["total_params"]),
        "status": _status(group),
        "CI over": (pool or {}).get("ci_kind") or "-",
        "peak memory": _mb(_mean(ok, "peak_memory_bytes")),
        "train time": _seconds(_mean(ok, "train_wall_s")),
        "latency unmerged/merged": " / ".join(
            _ms(_mean(ok, f"latency_{k}_s")) for k in ("unmerged", "merged")
        ),
    }


def _score(pool: dict | None, ok: list[dict]) -> str:
    """The pooled mean with its interval; without a leaderboard row, the mean alone."""
    if pool is not None and not _missing(pool["mean"]):
        low, high = pool["ci_low"], pool["ci_high"]
        interval = "" if _missing(low) or _missing(high) else f" [{low:.2f}, {high:.2f}]"
        return f"{pool['mean']:.3f}{interval}"
    mean = _mean(ok, "test_primary")
    return "-" if mean is None else f"{mean:.3f}"


def _mean(cells: list[dict], key: str) -> float | None:
    values = [c[key] for c in cells if key in c and not _missing(c[key])]
    return sum(values) / len(values) if values else None


def _seeds(seeds: list) -> str:
    seeds = sorted(set(seeds))
    return ",".join(str(s) for s in seeds) if len(seeds) <= 3 else f"n={len(seeds)}"


def _status(group: list[dict]) -> str:
    counts: dict[str, int] = {}
    for cell in group:
        counts[cell["status"]] = counts.get(cell["status"], 0) + 1
    if len(counts) == 1 and len(group) == 1:
        return group[0]["status"]
    # ok first, then the others by count
    order = sorted(counts.items(), key=lambda item: (item[0] != "ok", -item[1], item[0]))
    return ", ".join(f"{n} {s}" for s, n in order)


def _trainable(trainable, total) -> str:
    """e.g. '148K 0.65%': the count, short, and its share of the model."""
    if _missing(trainable):
        return "-"
    if not total or _missing(total):
        return _short_count(trainable)
    share = 100 * trainable / total
    digits = 0 if share >= 10 else 1 if share >= 1 else 2 if share >= 0.01 else 4
    return f"{_short_count(trainable)} {share:.{digits}f}%"


def _short_count(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{int(value)}"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _caption(groups: list[list[dict]]) -> str | None:
    """Each task's majority (or mean) baseline on test, once per task."""
    baselines: dict[str, float] = {}
    for group in groups:
        value = group[0]["baseline_test_primary"]
        if not _missing(value):
            baselines.setdefault(group[0]["task"], value)
    if not baselines:
        return None
    return "baseline on test: " + ", ".join(f"{t} {v:.3f}" for t, v in baselines.items())


def _listed(values) -> list:
    """A list column (a list, an array, or missing) as a list."""
    return [] if values is None else list(values)
