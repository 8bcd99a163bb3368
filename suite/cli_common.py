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
