"""`peftbench query`, `export`, `table` and `artifacts`: the commands that read (or tidy)
a results database. `register` adds them to the CLI where its help lists them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from suite.cli_common import (
    DbOpt,
    PluginsOpt,
    WideOpt,
    catalog,
    console,
    fail,
    fail_spec,
    print_full,
)
from suite.errors import SpecError
from suite.paths import DEFAULT_DB


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class ArtifactAction(str, Enum):
    list = "list"
    gc = "gc"


def print_table(db: Path, title: str | None, cell_ids: list[str] | None, wide: bool) -> None:
    from suite.results_table import results_table
    from suite.store.store import Store

    print_full(results_table(Store(db), title, cell_ids, wide))


def query(
    sql: Annotated[
        str | None, typer.Argument(help="One SQL statement (read-only connection).")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    view: Annotated[
        str | None,
        typer.Option(
            "--view",
            help="Print a view: results, leaderboard, pareto, trials, rank_sweep, aggregate, "
            "tuning_curves, example_outcomes, disagreements, lost_to_baseline, merging, "
            "compression, protocols, continual_results, continual_matrix, federated_results, federated_curve (a terminal table shows its main columns; csv/json every "
            "column). The analysis views carry a protocol column: compare rows of one "
            "protocol only.",
        ),
    ] = None,
) -> None:
    """Run a read-only SQL query on the results, or print one of the views (--view)."""
    from suite.store.store import Store
    from suite.store.views import view_query

    if (sql is None) == (view is None):
        fail("error:", "give either SQL or --view NAME", 2)
    try:
        statement = sql or view_query(view, all_columns=fmt != Format.table)
    except ValueError as exc:
        fail("error:", exc, 2)
    try:
        from suite.listing import typed_frame

        Store(db).upgrade_if_older()
        frame = typed_frame(Store(db), statement)
    except FileNotFoundError as exc:
        fail("error:", exc, 1)
    except Exception as exc:  # noqa: BLE001 - duckdb errors are the user's SQL
        fail("query failed:", exc, 1)
    from suite.listing import print_frame

    print_frame(console, frame, fmt.value)


def export(
    parquet: Annotated[
        Path, typer.Option("--parquet", help="Folder to write one Parquet file per table.")
    ],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Export every table of the results database as Parquet."""
    from suite.store.store import Store

    for path in Store(db).export_parquet(parquet):
        console.print(f"wrote {path}")


def table(
    matrix: Annotated[
        str | None,
        typer.Option(
            help="Only this matrix's cells (name or YAML path): every cell it expands to, "
            "also those another matrix stored first."
        ),
    ] = None,
    db: DbOpt = DEFAULT_DB,
    plugins: PluginsOpt = None,
    wide: WideOpt = False,
) -> None:
    """Print the results as a table in the terminal: one row per method and task, its
    seeds pooled (the leaderboard's score and interval); --wide adds the cost columns."""
    if not db.exists():
        fail("error:", f"no results database at {db}; run `peftbench run` first", 1)
    ids = None
    if matrix is not None:
        from suite.driver import matrix_cell_ids
        from suite.store.store import Store

        try:
            ids = matrix_cell_ids(catalog(plugins), matrix, Store(db))
        except SpecError as exc:
            fail_spec(exc)
    print_table(db, matrix, ids, wide)


def artifacts(
    action: Annotated[ArtifactAction, typer.Argument(help="list, or gc (remove unreferenced).")],
    db: DbOpt = DEFAULT_DB,
    unconsumed: Annotated[
        bool,
        typer.Option(help="gc: also remove recorded artifacts no stored post-hoc run consumed."),
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="gc: say what would go, remove nothing.")] = False,
) -> None:
    """The saved artifacts (adapters, or whole models) by cell id: list them, or remove the
    unreferenced ones: files no row of the store names (orphans), rows whose file is gone,
    and with --unconsumed artifacts no stored post-hoc run consumed."""
    from suite.artifacts import artifacts_dir
    from suite.listing import artifacts_frame, print_frame
    from suite.store.store import Store

    store = Store(db)
    if not db.exists():
        fail("error:", f"no results database at {db}", 1)
    store.init()
    frame, orphans = artifacts_frame(store, artifacts_dir(db))
    if action == ArtifactAction.list:
        shown = frame.assign(sha256=frame["sha256"].str[:16]) if len(frame) else frame
        print_frame(console, shown, "table")
        for path in orphans:
            console.print(f"orphan (no row): {path}", markup=False)
        return
    from suite.store.artifacts_gc import collect

    removed = collect(store, frame, orphans, unconsumed, dry_run)
    verb = "would remove" if dry_run else "removed"
    for line in removed:
        console.print(f"{verb} {line}", markup=False)
    console.print(f"{verb} {len(removed)} artifact(s)")


def register(app: typer.Typer) -> None:
    """Add the four commands to the CLI (after `validate`, as its help lists them)."""
    for command in (query, export, table, artifacts):
        app.command()(command)
