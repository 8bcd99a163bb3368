"""The `peftbench` command line. Heavy imports (torch, ray) wait until a command needs them."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from suite.cli_common import DbOpt, PluginsOpt, WideOpt, console, err_console, print_full
from suite.cli_common import catalog as _catalog
from suite.cli_common import fail as _error
from suite.cli_common import fail_spec as _fail_spec
from suite.cli_published import PublishedOpt
from suite.cli_published import load_published_into as _load_published
from suite.cli_published import register as _register_published
from suite.cli_published import register_verify as _register_verify
from suite.cli_store import print_table as _print_table
from suite.cli_store import register as _register_store
from suite.errors import SpecError
from suite.paths import DEFAULT_DB

app = typer.Typer(
    help="peftbench: a declarative benchmark suite and leaderboard for parameter-efficient "
    "fine-tuning. Specs are YAML; results go to a DuckDB file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
DEFAULT_MATRIX = "smoke"


SliceOpt = Annotated[
    list[str] | None, typer.Option(help="Only this name on that axis (repeatable).")
]


class ExecutorKind(str, Enum):
    ray = "ray"
    local = "local"


@app.command()
def run(
    matrix: Annotated[str, typer.Argument(help="Matrix name or YAML path.")] = DEFAULT_MATRIX,
    db: DbOpt = DEFAULT_DB,
    rerun: Annotated[bool, typer.Option(help="Run cells again even if stored ok.")] = False,
    plugins: PluginsOpt = None,
    executor: Annotated[
        ExecutorKind,
        typer.Option(help="ray (embedded Ray, or --address) or local (this process)."),
    ] = ExecutorKind.ray,
    address: Annotated[
        str | None,
        typer.Option(help="Join a Ray cluster: auto or HOST:PORT (default: RAY_ADDRESS)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="At most this many Ray workers per profile.")
    ] = None,
    max_retries: Annotated[
        int, typer.Option(min=0, help="Retries of a cell whose worker process died.")
    ] = 2,
    wide: WideOpt = False,
    task: SliceOpt = None,
    method: SliceOpt = None,
    model: SliceOpt = None,
    seed: Annotated[list[int] | None, typer.Option(help="Only this seed (repeatable).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the cells to run and stop: nothing runs.")
    ] = False,
) -> None:
    """Run a matrix (default: the embedded smoke matrix) and store every cell's result.

    --task/--method/--model/--seed run a slice: the cells the whole matrix would run (a
    later run of it skips them), so a long protocol runs in pieces, most wanted first."""
    from suite import cli_run
    from suite.store.store import Store

    store = Store(db)
    axes = (task, method, model, seed)
    if dry_run:
        cli_run.print_cells(_plan(plugins, matrix, store, rerun, axes))
        raise typer.Exit(0)
    # A second run on a busy store says at once whose run holds it (exit 3), before it
    # plans, starts Ray or draws a progress bar; the lock itself is taken once the specs
    # are known good (a spec error writes nothing).
    cli_run.refuse_if_busy(store)
    the_plan = _plan(plugins, matrix, store, rerun, axes)
    with cli_run.run_lock(store):
        options = {"address": address, "workers": workers, "max_retries": max_retries}
        summary = _execute(the_plan, store, db, executor.value, options)
        raise typer.Exit(cli_run.report_run(the_plan, summary, db, wide, _print_table))


def _execute(the_plan, store, db: Path, executor: str, options: dict):
    """Run the plan on the chosen executor with a progress bar; a stop signal (Ctrl-C,
    SIGTERM) ends the command with what was kept and how to resume."""
    from suite import cli_run
    from suite.driver import make_executor, run_plan
    from suite.progress import MatrixProgress
    from suite.scheduler.resources import SchedulingError
    from suite.store.store import StoreBusy

    try:
        with (
            cli_run.stop_signals(),
            MatrixProgress(len(the_plan.todo), err_console, db.parent / "logs") as progress,
        ):
            chosen = make_executor(executor, progress, db.parent, **options)
            return run_plan(the_plan, store, cli_run.StopsOnSignals(chosen), progress)
    except StoreBusy as exc:
        _error("error:", exc, 3)
    except SchedulingError as exc:
        _error("cannot schedule:", exc, 4)
    except (KeyboardInterrupt, Exception):  # Ctrl-C or SIGTERM, also inside a DuckDB write
        if cli_run.stop_received() is None:
            raise
        cli_run.print_stopped(cli_run.stop_received(), the_plan, store)
        raise typer.Exit(cli_run.STOPPED_EXIT) from None


def _plan(plugins, matrix: str, store, rerun: bool, axes=()):
    """The checked plan (exit 2 on a spec error, 3 on a busy store), announced on stderr;
    `axes`: the slice's (tasks, methods, models, seeds), each None for all."""
    from suite.assets import MissingAssets, check_assets
    from suite.driver import plan
    from suite.slices import Slice
    from suite.store.store import StoreBusy

    only = Slice.of(*(names or () for names in axes))

    try:
        the_plan = plan(_catalog(plugins), matrix, store, rerun=rerun, only=only)
        check_assets(the_plan.loading_cells)  # before Ray starts or anything is stored
    except SpecError as exc:
        _fail_spec(exc)
    except StoreBusy as exc:  # reading which cells are done waits on a busy file
        _error("error:", exc, 3)
    except MissingAssets as exc:
        _error("missing packages:", exc, 2)
    then = (
        " (tuning trials; the selected configurations' seed runs follow)" if the_plan.phases else ""
    )
    if the_plan.federated:
        then = " (federated rounds: each run's next rounds follow in order)"
    if the_plan.posthoc is not None:
        then += "; post-hoc stages follow"
    sliced = f" (slice: {escape(only.words())})" if only is not None and not only.empty else ""
    err_console.print(
        f"matrix [bold]{the_plan.matrix}[/]{sliced}: {len(the_plan.cells)} cells{then}, "
        f"{the_plan.skipped} already stored ok, {the_plan.to_run} to run -> {escape(str(store.path))}"
    )
    if the_plan.skipped_pairs:
        err_console.print(
            f"left out {len(the_plan.skipped_pairs)} model x task pair(s) the model cannot "
            f"run: {', '.join(the_plan.skipped_pairs)}"
        )
    return the_plan


class ListFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    md = "md"


class ListKind(str, Enum):
    methods = "methods"
    posthoc = "posthoc"
    tasks = "tasks"
    models = "models"
    profiles = "profiles"
    matrices = "matrices"


@app.command("list")
def list_(
    kind: Annotated[ListKind, typer.Argument(help="What to list.")],
    plugins: PluginsOpt = None,
    fmt: Annotated[
        ListFormat,
        typer.Option("--format", help="table, csv / json for scripts, md for docs."),
    ] = ListFormat.table,
) -> None:
    """List the registered methods (with their fidelity and defaults), post-hoc merge and
    compress methods (posthoc), tasks, models, hardware profiles or matrices."""
    from suite.list_records import list_records
    from suite.listing import print_records, records_markdown, render_list

    try:
        catalog = _catalog(plugins)
    except SpecError as exc:
        _fail_spec(exc)
    if fmt == ListFormat.table:
        print_full(render_list(catalog, kind.value))
    elif fmt == ListFormat.md:
        typer.echo(records_markdown(list_records(catalog, kind.value), kind.value), nl=False)
    else:
        print_records(console, list_records(catalog, kind.value), fmt.value)


@app.command()
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="YAML files or folders (searched recursively).")
    ] = None,
    plugins: PluginsOpt = None,
    conformance: Annotated[
        Path | None,
        typer.Option(
            "--conformance",
            metavar="DIR",
            help="Also run the conformance checks on the tiny BERT for every method folder "
            "under DIR and print a pass/fail table; exit code 1 if any check fails.",
        ),
    ] = None,
) -> None:
    """Validate every YAML spec under the given paths; exit code 2 if any is wrong."""
    from suite.validate import validate_paths

    paths = paths or ([conformance] if conformance is not None else [])
    if not paths:
        err_console.print("give YAML paths to validate, or --conformance DIR")
        raise typer.Exit(2)
    try:
        checked = validate_paths(paths, plugins or [])
    except SpecError as exc:
        _fail_spec(exc)
    for path, kind in checked:
        console.print(f"[green]ok[/] {kind:8} {path}")
    console.print(f"{len(checked)} spec file(s) valid")
    if conformance is not None:
        from suite.conformance_bench import conformance_command

        try:
            code = conformance_command(conformance, plugins or [], console)
        except SpecError as exc:
            _fail_spec(exc)
        raise typer.Exit(code)


_register_store(app)


@app.command()
def leaderboard(
    db: DbOpt = DEFAULT_DB,
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 shares it with the network.")
    ] = "127.0.0.1",
    published: PublishedOpt = True,
    plugins: PluginsOpt = None,
) -> None:
    """Start the Streamlit leaderboard (reads the database read-only) and print its URL.

    It opens on the published league protocol, else on the protocol with the most rows;
    the sidebar chooses another (one protocol at a time)."""
    from leaderboard import serve  # streamlit is imported by the child process only
    from suite.store.store import Store

    Store(db).upgrade_if_older()  # an older store gains the protocol column first
    if published:
        _load_published(db)

    raise typer.Exit(serve.run(db, host, port, echo=console.print, plugins=plugins or []))


@app.command()
def report(
    html: Annotated[Path, typer.Option("--html", help="The HTML file to write.")],
    db: DbOpt = DEFAULT_DB,
    published: PublishedOpt = True,
) -> None:
    """Write the Overview and Pareto charts as one static HTML file (no server needed),
    one section per benchmark protocol."""
    from leaderboard.report import write_report
    from suite.store.store import Store

    if published:
        _load_published(db)
    if not db.exists():
        _error("error:", f"no results database at {db}", 1)
    Store(db).upgrade_if_older()
    console.print(f"wrote {write_report(db, html)}")


_register_published(app, console, err_console)
_register_verify(app, console, err_console)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(prog_name="peftbench")


if __name__ == "__main__":
    sys.exit(main())
