"""A store table's columns, derived from the result type whose rows it holds.

A result type's fields (suite/results.py, suite/track_results.py) are the columns: every
field its dump keeps, with the SQL type its annotation says, less those marked
`Elsewhere` (suite/result_columns.py: they go to a table of their own). The store adds its own columns (the cell's identity, provenance), which no
result type has. `layout` puts them in the order stores already written have, and a
field no layout names yet (a new measurement) after them: adding a field to a result
type adds a column, and `Store.init` adds it to an older store in place.
"""

from __future__ import annotations

import json
import types
import typing
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from suite.hashing import spec_hash
from suite.result_columns import Elsewhere, SqlType
from suite.results import CellReport

# A table's layout: the store's own columns as (name, SQL type), a result type's by name.
Layout = tuple[str | tuple[str, str], ...]

# The columns every attempt table (posthoc_runs, continual_runs, federated_rounds) has:
# its key, status, method and placement and provenance (`attempt_layout` places them as
# the stored tables have them; `attempt_fields` and `method_fields` fill them).
_KEY: Layout = (
    ("result_id", "VARCHAR PRIMARY KEY"),
    ("cell_id", "VARCHAR NOT NULL"),
    ("run_id", "VARCHAR"),
)
_METHOD: Layout = (
    ("method", "VARCHAR"),
    ("method_name", "VARCHAR"),
    ("family", "VARCHAR"),
    ("fidelity", "VARCHAR"),
)
_PROVENANCE: Layout = (
    ("hostname", "VARCHAR"),
    ("worker_pid", "INTEGER"),
    ("hardware_profile_id", "VARCHAR"),
    ("started_at", "VARCHAR"),
    ("finished_at", "TIMESTAMP"),
    ("cell_wall_s", "DOUBLE"),
    ("attempts", "INTEGER"),
    ("git_sha", "VARCHAR"),
    ("git_dirty", "BOOLEAN"),
)


def attempt_layout(own: Layout, tail: Layout, identity: Layout = (), stage: Layout = ()) -> Layout:
    """An attempt table's layout: key, the kind's `identity`, status, matrix, its `stage`,
    method, its `own` columns, provenance, its `tail` (the order stored tables have)."""
    status = (("status", "VARCHAR NOT NULL"), ("error", "VARCHAR"), ("matrix", "VARCHAR"))
    return (*_KEY, *identity, *status, *stage, *_METHOD, *own, *_PROVENANCE, *tail)


# Python type -> DuckDB type (bool before int: a bool is an int to Python).
_SQL = ((bool, "BOOLEAN"), (int, "BIGINT"), (float, "DOUBLE"), (str, "VARCHAR"), (dict, "JSON"))


def _markers(annotation) -> list:
    """The Annotated metadata anywhere in an annotation (`Int32 | None` included)."""
    found = list(getattr(annotation, "__metadata__", ()))
    for arg in typing.get_args(annotation):
        found += _markers(arg)
    return found


def sql_type(annotation) -> str:
    """The DuckDB type of a field's annotation (None stripped; list[X] is X[])."""
    declared = [m.sql for m in _markers(annotation) if isinstance(m, SqlType)]
    if declared:
        return declared[0]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return sql_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kept) == 1:
            return sql_type(kept[0])
    if origin is typing.Literal:
        return sql_type(type(typing.get_args(annotation)[0]))
    if origin is list:
        return sql_type(typing.get_args(annotation)[0]) + "[]"
    base = origin or annotation
    for python, sql in _SQL:
        if isinstance(base, type) and issubclass(base, python):
            return sql
    raise TypeError(f"no SQL type for {annotation!r}: mark the field SqlType(...) or Elsewhere")


def _field_markers(field: FieldInfo) -> list:
    # pydantic keeps a top-level Annotated's metadata apart from the annotation.
    return [*field.metadata, *_markers(field.annotation)]


def _is_column(field: FieldInfo) -> bool:
    return not field.exclude and not any(isinstance(m, Elsewhere) for m in _field_markers(field))


def _field_type(field: FieldInfo) -> str:
    declared = [m.sql for m in _field_markers(field) if isinstance(m, SqlType)]
    kind = declared[0] if declared else sql_type(field.annotation)
    return kind + (" NOT NULL" if field.is_required() else "")


def result_columns(result_type: type[BaseModel]) -> dict[str, str]:
    """name -> SQL type of every field of `result_type` that is a column of its row."""
    return {
        name: _field_type(field)
        for name, field in result_type.model_fields.items()
        if _is_column(field)
    }


def layout(order: Layout, result_type: type[BaseModel]) -> dict[str, str]:
    """A table's columns: `order` gives the store's own columns as (name, SQL type) and
    places the result type's by bare name; the result's fields it does not name follow,
    in the order the type declares them. A bare name the type lacks is an error."""
    derived = result_columns(result_type)
    columns: dict[str, str] = {}
    for entry in order:
        if isinstance(entry, tuple):
            columns[entry[0]] = entry[1]
        elif entry in derived:
            columns[entry] = derived[entry]
        else:
            raise ValueError(f"column {entry!r} is not a stored field of {result_type.__name__}")
    for name, kind in derived.items():
        columns.setdefault(name, kind)
    return columns


def existing(con, table: str) -> set[str]:
    """The columns `table` has in the store (none when it has no such table)."""
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
    ).fetchall()
    return {r[0] for r in rows}


def add_missing(con, table: str, columns: dict[str, str]) -> None:
    """Bring `table`, as an older store made it, up to `columns` (new ones are NULL)."""
    have = existing(con, table)
    for name, kind in columns.items():
        if name not in have:  # names and types come from the result types, never from users
            con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {_nullable(kind)}")


def _nullable(kind: str) -> str:
    # ALTER TABLE can not add a constrained column to rows that exist.
    return kind.split(" PRIMARY")[0].split(" NOT NULL")[0]


def _insert_sql(table: str, cols: list[str], conflict: str | None) -> str:
    verb = f"INSERT OR {conflict}" if conflict else "INSERT"
    return f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def insert_row(con, table: str, columns, row: dict, conflict: str | None = None) -> None:
    """INSERT one row of `table`, its `columns` taken from `row` (missing ones NULL);
    `conflict` ("IGNORE", "REPLACE") says what a row whose key is stored does."""
    cols = list(columns)
    con.execute(_insert_sql(table, cols, conflict), [row.get(c) for c in cols])


def insert_rows(con, table: str, columns, rows: list[dict], conflict: str | None = None) -> None:
    """`insert_row` for many rows at once (none: nothing)."""
    cols = list(columns)
    if rows:
        con.executemany(
            _insert_sql(table, cols, conflict), [[r.get(c) for c in cols] for r in rows]
        )


def spec_yaml(spec) -> str:
    """A resolved spec as a row stores it (unset options left out)."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)


def create_table(name: str, columns: dict[str, str]) -> str:
    """The CREATE TABLE statement of `name` with `columns` (name -> SQL type), in order."""
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ("
        + ", ".join(f"{n} {k}" for n, k in columns.items())
        + ")"
    )


def method_fields(method) -> dict[str, Any]:
    """A row's method columns: its label, name, family, fidelity, version, params, and the
    resolved spec with its hash (a table keeps those of them it has)."""
    return {
        "method": method.label, "method_name": method.name, "family": method.family,
        "fidelity": method.fidelity, "method_version": method.method_version,
        "params": json.dumps(method.params), "method_yaml": spec_yaml(method),
        "method_hash": spec_hash(method),
    }  # fmt: skip


def attempt_fields(
    cell_id: str, report: CellReport, provenance: dict[str, Any], log_path: str | None
) -> dict[str, Any]:
    """An attempt row's key, status, placement and provenance (a new result_id; a table
    keeps those of them it has)."""
    measured, placement = report.measured, report.placement
    return {
        "result_id": uuid.uuid4().hex, "cell_id": cell_id, "run_id": provenance.get("run_id"),
        "status": measured.status, "error": measured.error,
        "hostname": placement.hostname, "worker_pid": placement.worker_pid,
        "hardware_profile_id": placement.hardware_profile_id,
        "started_at": measured.started_at, "finished_at": datetime.now(UTC).replace(tzinfo=None),
        "cell_wall_s": measured.cell_wall_s, "attempts": report.attempts,
        "git_sha": provenance.get("git_sha"), "git_dirty": provenance.get("git_dirty"),
        "versions": json.dumps(provenance.get("versions", {})),
        "hardware": json.dumps(provenance.get("hardware", {})), "log_path": log_path,
    }  # fmt: skip


class Attempt(NamedTuple):
    """One attempt as the store writes it: its row of `table` (only `columns` are kept)
    and its score rows of `scores_table`, each a tuple in that table's column order."""

    table: str
    columns: dict[str, str]
    row: dict[str, Any]
    scores_table: str | None = None
    scores: Sequence[tuple] = ()


def write_attempt(con, attempt: Attempt) -> str:
    """Insert one attempt's row and its score rows (the caller holds a transaction);
    returns its result_id."""
    insert_row(con, attempt.table, attempt.columns, attempt.row)
    if attempt.scores:
        marks = ", ".join("?" * len(attempt.scores[0]))
        con.executemany(f"INSERT INTO {attempt.scores_table} VALUES ({marks})", attempt.scores)
    return attempt.row["result_id"]
