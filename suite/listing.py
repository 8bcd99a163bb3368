"""Terminal rendering: plugin lists, query output, the post-hoc table."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table
from rich.text import Text

from suite.registry import Catalog

# The record fields (suite/list_records.py) the terminal table shows, per kind.
TABLE_COLUMNS = {
    "methods": ["name", "family", "kind", "fidelity", "version", "mergeable", "citation"],
    "tasks": ["name", "type", "primary_metric", "metrics", "description"],
    "models": ["name", "family", "source_kind", "source", "pooling", "target_families"],
    "profiles": ["name", "cpus", "gpus", "expected_device", "description"],
    "matrices": ["name", "models", "methods", "tasks", "seeds", "profile"],
    "posthoc": ["name", "stage", "family", "fidelity", "version", "requires", "citation"],
}
# The record fields `--format md` writes, where they differ from the table's: the methods'
# list in Markdown is docs/method-defaults.md.
MARKDOWN_COLUMNS = {"methods": ["name", "family", "fidelity", "version", "defaults"]}
# A table cell shows this much of a description (csv and json carry it whole).
_TABLE_DESCRIPTION = 80

# How a terminal table marks each fidelity level (docs/fidelity.md); csv/json print the
# plain label.
FIDELITY_STYLE = {"reference": "green", "paper": "yellow", "reconstructed": "bold red"}


def render_list(catalog: Catalog, kind: str) -> Table:
    from suite.list_records import list_records

    records = list_records(catalog, kind)
    table = Table(title=f"{kind} ({len(records)})")
    columns = TABLE_COLUMNS[kind]
    for col in columns:
        table.add_column(col.replace("_", " "), overflow="fold")
    for record in records:
        cells = [_shown(col, record[col]) for col in columns]
        fidelity = record.get("fidelity")
        if fidelity in FIDELITY_STYLE:
            marked = "reconstructed (!)" if fidelity == "reconstructed" else fidelity
            cells[columns.index("fidelity")] = Text(marked, style=FIDELITY_STYLE[fidelity])
        table.add_row(*cells)
    return table


def _shown(column: str, value) -> str:
    """A record's value as the table prints it."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if column == "description" and len(value) > _TABLE_DESCRIPTION:
        return value[: _TABLE_DESCRIPTION - 3].rstrip() + "..."
    return str(value)


def records_markdown(records: list[dict], kind: str) -> str:
    """The records as a Markdown table: a dict as `key value, ...`, a list comma-joined."""
    from suite.method_defaults import shown

    columns = MARKDOWN_COLUMNS.get(kind, TABLE_COLUMNS[kind])

    def cell(col: str, value) -> str:
        if isinstance(value, dict):
            text = ", ".join(f"{k} {shown(v)}" for k, v in value.items()) or "-"
        else:
            text = _shown(col, value)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in columns) + " |" for r in records]
    return "\n".join(lines) + "\n"


def print_records(console: Console, records: list[dict], fmt: str) -> None:
    """Listings for scripts. json: the typed records; csv: one row each, a list's items
    joined by ';', a missing value empty."""
    import pandas as pd

    if fmt == "json":
        console.print(json.dumps(records, indent=2), markup=False, highlight=False, soft_wrap=True)
        return
    flat = [{k: _flat(v) for k, v in r.items()} for r in records]
    print_frame(console, pd.DataFrame.from_records(flat), fmt)


def _flat(value):
    """A csv cell: a list's items joined by ';', a dict as JSON."""
    if isinstance(value, list):
        return ";".join(map(str, value))
    return json.dumps(value) if isinstance(value, dict) else value


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
    from suite.cli_common import print_full

    print_full(table, console)


def _fmt(value) -> str:
    if _missing_any(value):
        return "-"
    if isinstance(value, float):
        # Large values whole (77580, not 7.758e+04); small ones to 4 significant digits.
        return f"{value:.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


def typed_frame(store, sql: str):
    """A read-only query's rows with integer columns kept integers (nullable Int64, not
    floats where a value is NULL), for `peftbench query` in every format."""
    import warnings

    import pandas as pd
    import pyarrow as pa

    def nullable(kind):
        if pa.types.is_unsigned_integer(kind) and kind.bit_width == 64:
            return pd.UInt64Dtype()
        return pd.Int64Dtype() if pa.types.is_integer(kind) else None

    with store.connect(read_only=True) as con, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the extra copy of a DB-API result
        table = con.execute(sql).to_arrow_table()
    return _numbers_from_decimals(table).to_pandas(types_mapper=nullable)


def _numbers_from_decimals(table):
    """DuckDB's sums and literals are DECIMAL (Python Decimals, strings in JSON): whole
    ones become integers where they fit, the rest floats."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):
            column = table.column(i)
            try:
                cast = column.cast(pa.int64()) if field.type.scale == 0 else None
            except pa.ArrowInvalid:  # beyond int64
                cast = None
            cast = cast if cast is not None else column.cast(pa.float64())
            table = table.set_column(i, field.name, cast)
    return table


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
