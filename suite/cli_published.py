"""`peftbench publish` and `peftbench import-published`: a protocol's results as a dataset
in the repository (suite/store/published.py), written from a store and read back into one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from suite.paths import DEFAULT_DB, PUBLISHED

DbOpt = Annotated[Path, typer.Option("--db", help="Results database.")]


def _fail(console: Console, message: object, code: int = 1):
    console.print(Text.assemble(("error:", "bold red"), " ", str(message)), soft_wrap=True)
    raise typer.Exit(code)


def register(app: typer.Typer, console: Console, err_console: Console) -> None:
    """Add the two commands to the CLI."""

    @app.command()
    def publish(
        protocol: Annotated[str, typer.Argument(help="The protocol whose rows to publish.")],
        db: DbOpt = DEFAULT_DB,
        out: Annotated[
            Path | None,
            typer.Option(help="Folder to write (default: leaderboard/published/PROTOCOL)."),
        ] = None,
        note: Annotated[str, typer.Option(help="A line for the manifest.")] = "",
    ) -> None:
        """Write a protocol's rows, metrics, per-example predictions and hardware profiles
        as Parquet with a manifest (commits, method versions, CPU-hours, checksums)."""
        from suite.store.published import PublishedError, publish
        from suite.store.store import Store

        if not db.exists():
            _fail(err_console, f"no results database at {db}")
        folder = out or PUBLISHED / protocol
        try:
            manifest = publish(Store(db), protocol, folder, note=note)
        except PublishedError as exc:
            _fail(err_console, exc)
        size = sum(f["bytes"] for f in manifest["files"].values())
        console.print(
            f"published {manifest['cells']} cells of {protocol} "
            f"({', '.join(f'{v} {k}' for k, v in manifest['status'].items())}; "
            f"{manifest['cpu_hours']} CPU-hours; {size / 1e6:.2f} MB) -> {folder}"
        )

    @app.command("import-published")
    def import_published(
        folder: Annotated[Path, typer.Argument(help="A published folder (with manifest.json).")],
        db: DbOpt = DEFAULT_DB,
    ) -> None:
        """Load a published folder into a store: its cells count as stored (a run of the
        same protocol resumes after them) and its rows are marked with their origin."""
        from suite.store.published import PublishedError, load_published
        from suite.store.store import Store

        try:
            report = load_published(Store(db), folder)
        except PublishedError as exc:
            _fail(err_console, exc, 2)
        added = ", ".join(f"{v} {k}" for k, v in report.added.items())
        console.print(f"loaded {report.name} into {db}: {added}")
