"""Terminal rendering: plugin lists, query output, the results table."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table
from rich.text import Text

from suite.registry import Catalog

LIST_COLUMNS = {
    "methods": ["name", "family", "kind", "fidelity", "version", "mergeable", "citation"],
    "tasks": ["name", "type", "primary metric", "metrics", "description"],
    "models": ["name", "family", "source", "pooling", "target families"],
    "profiles": ["name", "cpus", "gpus", "expected device", "description"],
    "matrices": ["name", "models", "methods", "tasks", "seeds", "profile"],
    "posthoc": ["name", "stage", "family", "fidelity", "version", "requires", "citation"],
}

# How a terminal table marks each fidelity level (docs/fidelity.md); csv/json print the
# plain label.
FIDELITY_STYLE = {"reference": "green", "paper": "yellow", "reconstructed": "bold red"}


def list_records(catalog: Catalog, kind: str) -> list[dict]:
    """One dict per registered spec of `kind`, keyed by LIST_COLUMNS[kind]."""
    rows = {
        "methods": _method_row,
        "tasks": _task_row,
        "models": _model_row,
        "profiles": _profile_row,
        "matrices": _matrix_row,
        "posthoc": _posthoc_row,
    }[kind]
    columns = LIST_COLUMNS[kind]
    return [dict(zip(columns, rows(catalog, e), strict=True)) for e in getattr(catalog, kind)]


def render_list(catalog: Catalog, kind: str) -> Table:
    records = list_records(catalog, kind)
    table = Table(title=f"{kind} ({len(records)})")
    for col in LIST_COLUMNS[kind]:
        table.add_column(col, overflow="fold")
    for record in records:
        cells = ["-" if v is None else str(v) for v in record.values()]
        if kind in ("methods", "posthoc") and record["fidelity"] in FIDELITY_STYLE:
            style = FIDELITY_STYLE[record["fidelity"]]
            marked = "reconstructed (!)" if record["fidelity"] == "reconstructed" else None
            cells[3] = Text(marked or record["fidelity"], style=style)
        table.add_row(*cells)
    return table


def print_records(console: Console, records: list[dict], fmt: str) -> None:
    """Listings for scripts: csv or json, never a table that wraps at 80 columns."""
    import pandas as pd

    print_frame(console, pd.DataFrame.from_records(records), fmt)


def _method_row(catalog, e):
    from suite.cells import implementation_chain

    chain = implementation_chain(catalog, e)

    def first(field):
        return next(
            (getattr(x.spec, field) for x in chain if getattr(x.spec, field) is not None), None
        )

    mergeable = first("mergeable")
    citation = first("citation")
    version = 1 + sum((x.spec.version or 1) - 1 for x in chain)
    return [
        e.name,
        e.spec.family,
        e.spec.kind or "-",
        first("fidelity"),
        version,
        {True: "yes", False: "no", None: "?"}[mergeable],
        citation.short() if citation else "-",
    ]


def _posthoc_row(catalog, e):
    s = e.spec
    return [e.name, s.stage, s.family, s.fidelity, s.version, s.requires,
            s.citation.short() if s.citation else "-"]  # fmt: skip


def _task_row(catalog, e):
    s = e.spec
    return [
        e.name,
        s.type,
        s.primary_metric,
        ", ".join(m.name for m in s.metrics),
        s.description[:80],
    ]


def _model_row(catalog, e):
    s = e.spec.source
    src = s.hub or s.path or f"package {s.package}"
    return [e.name, e.spec.family, src, e.spec.pooling, ", ".join(e.spec.target_modules)]


def _profile_row(catalog, e):
    r = e.spec.resources
    exp = e.spec.expected
    return [e.name, r.num_cpus, r.num_gpus, exp.name or exp.type, e.spec.description[:60]]


def _matrix_row(catalog, e):
    s = e.spec
    return [
        e.name,
        ", ".join(s.models),
        ", ".join(x.display for x in s.entries()),
        ", ".join(s.tasks),
        len(s.seeds),
        s.profile,
    ]


def print_frame(console: Console, frame, fmt: str) -> None:
    if fmt == "csv":
        console.print(
            frame.to_csv(index=False), end="", markup=False, highlight=False, soft_wrap=True
        )
        return
    if fmt == "json":
        console.print(
            json.dumps(json.loads(frame.to_json(orient="records")), indent=2),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    table = Table()
    for col in frame.columns:
        table.add_column(str(col), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    console.print(table)


def _fmt(value) -> str:
    if _missing_any(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _mb(value) -> str:
    return "-" if _missing(value) else f"{value / 2**20:,.0f} MiB"


def _ms(value) -> str:
    return "-" if _missing(value) else f"{value * 1000:,.0f} ms"


def _records(frame) -> list[dict]:
    """Rows as dicts with None for every missing value (pandas NA, NaN, NaT)."""
    return [
        {k: (None if _missing_any(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _missing_any(value) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def posthoc_table(store, matrix: str | None, cell_ids: list[str]) -> Table:
    """The post-hoc cells of a run: each source task's primary test score, normalised by
    that task's own adapter (merges) or by the dense model (compressions)."""
    frame = store.query(
        "SELECT r.cell_id, r.stage, r.method, r.status, r.level_label, r.stored_bytes, "
        "r.stage_time_s, r.input_methods, s.task, s.metric, s.value, s.source_value, "
        "s.normalised FROM posthoc_results r LEFT JOIN posthoc_scores s ON s.result_id = "
        "r.result_id AND s.split = 'test' AND s.is_primary WHERE r.cell_id IN (SELECT unnest(?)) "
        "ORDER BY r.stage DESC, r.stage_name, r.method, s.task",
        [cell_ids],
    )
    table = Table(title="post-hoc results" + (f" (matrix {matrix})" if matrix else ""))
    columns = ["stage", "method", "of", "status", "task", "test metric", "source", "normalised",
               "level", "stored", "stage time"]  # fmt: skip
    for col in columns:
        table.add_column(col, overflow="fold")
    for r in _records(frame):
        metric = "-" if r["value"] is None else f"{r['metric']} {r['value']:.4f}"
        table.add_row(
            r["stage"], r["method"], _joined(r["input_methods"]), r["status"],
            r["task"] or "-", metric, _fmt(r["source_value"]), _fmt(r["normalised"]),
            r["level_label"] or "-", _kib(r["stored_bytes"]), _ms(r["stage_time_s"]),
        )  # fmt: skip
    return table


def _joined(values) -> str:
    """A list column (a list, an array or missing) as a+b, or "-"."""
    if values is None or (not hasattr(values, "__len__") and _missing(values)):
        return "-"
    return "+".join(str(v) for v in values) or "-"


def _kib(value) -> str:
    return "-" if _missing(value) else f"{value / 2**10:,.1f} KiB"


def artifacts_frame(store, folder):
    """Every recorded artifact, whether its file is there, and how many stored post-hoc
    runs consumed it; plus files in `folder` no row names (orphans)."""
    import pandas as pd

    from suite.artifacts import artifact_file

    if not store.path.exists():
        return pd.DataFrame(), []
    frame = store.query(
        "SELECT a.cell_id, a.kind, a.method, a.task, a.model, a.seed, a.bytes, a.sha256, a.path, "
        "(SELECT count(*) FROM posthoc_runs p WHERE list_contains(p.input_cell_ids, a.cell_id)) "
        "AS consumed_by FROM artifacts a ORDER BY a.method, a.task, a.seed"
    )
    frame["on_disk"] = [bool(p) and os.path.isfile(p) for p in frame["path"]]
    named = {str(artifact_file(folder, c)) for c in frame["cell_id"]} | set(frame["path"])
    orphans = sorted(str(p) for p in folder.glob("*.safetensors") if str(p) not in named)
    return frame, orphans
