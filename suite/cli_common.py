"""What every `peftbench` command module shares: the consoles, the common options, the
error exits and the plugin catalogue. It imports nothing of the CLI, so the command
modules (cli.py, cli_published.py, cli_store.py) can all import it without a cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from suite.errors import SpecError

console = Console()
err_console = Console(stderr=True)

PluginsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--plugins",
        help="Extra plugin folder (methods/, tasks/, ... or one method/task folder). "
        "Repeatable; also PEFTBENCH_PLUGINS (os.pathsep-separated).",
    ),
]
DbOpt = Annotated[Path, typer.Option("--db", help="Results database.")]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="The results table with every column (baseline, interval kind, memory, time, "
        "latency); by default the essential ones, which fit 80 columns.",
    ),
]


# The widest a table is printed: past this a row no longer reads as one line, so the
# cells fold (query's long text columns) rather than the line running on.
MAX_WIDTH = 400


def full_width(out: Console, renderable: object) -> Console:
    """`out`, or a console wide enough for `renderable`: rich squeezes a table into the
    console's width and cuts the cells that do not fit. Off a terminal (pipes, CI logs;
    80 columns to rich) nothing wraps the lines, so the table gets its natural width; a
    terminal gets the width at which no cell is cut (cells wrap at their spaces first).
    Every table the commands print goes through here."""
    fit = out.measure(renderable, options=out.options.update_width(MAX_WIDTH))
    needed = fit.minimum if out.is_terminal else fit.maximum
    if needed <= out.width:
        return out
    return Console(width=needed, file=out.file, force_terminal=out.is_terminal)


def print_full(renderable: object, out: Console = console) -> None:
    """Print a table at its full width (`full_width`)."""
    full_width(out, renderable).print(renderable)


def fail(label: str, message: object, code: int) -> NoReturn:
    """`label: message` on stderr (the label styled, the message printed as is: it may
    hold brackets that are not markup), then exit with `code`."""
    err_console.print(Text.assemble((label, "bold red"), " ", str(message)), soft_wrap=True)
    raise typer.Exit(code)


def fail_spec(exc: SpecError) -> NoReturn:
    err_console.print(f"[bold red]spec error[/] ({len(exc.issues)} problem(s)):")
    for issue in exc.issues:
        err_console.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def catalog(plugins: list[Path] | None):
    """The built-in plugins plus the extra folders (and PEFTBENCH_PLUGINS)."""
    from suite.registry import Catalog

    return Catalog.discover(plugins or [])
