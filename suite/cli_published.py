"""`peftbench publish` and `peftbench import-published`: a protocol's results as a dataset
in the repository (suite/store/published.py), written from a store and read back into one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from suite.cli_common import DbOpt, catalog, err_console, fail, print_full
from suite.paths import DEFAULT_DB, PUBLISHED

PublishedOpt = Annotated[
    bool,
    typer.Option(
        help="Load the published datasets of this checkout (leaderboard/published/) into "
        "the store first, marked as published, beside the store's own runs."
    ),
]


def load_published_into(db: Path) -> None:
    """The published datasets of this checkout loaded into the store (new rows only; they
    keep their origin, so the pages tell them from the store's own runs)."""
    from suite.store.published import PublishedError, load_all_published
    from suite.store.store import Store

    try:
        reports = load_all_published(Store(db), PUBLISHED)
    except PublishedError as exc:
        fail("error:", exc, 2)
    for report in reports:
        if report.rows:
            err_console.print(
                f"loaded published {report.name}: {report.rows} rows "
                f"(--no-published leaves them out)"
            )


def _basis(manifest: dict) -> str:
    """How many rows' CPU time was measured, how many counted as wall x threads."""
    return ", ".join(f"{n} {k}" for k, n in manifest["cpu_hours_basis"].items())


def _published_words(manifest: dict, protocol: str, folder: Path) -> str:
    """What `publish` wrote, in words: rows, statuses, CPU-hours and how they were counted,
    size, and any rows left out as stale."""
    from suite.store.published import track_of

    size = sum(f["bytes"] for f in manifest["files"].values())
    unit = track_of(manifest).unit
    lines = [
        f"published {manifest[unit]} {manifest['track']} {unit} of {protocol} "
        f"({', '.join(f'{v} {k}' for k, v in manifest['status'].items())}; "
        f"{manifest['cpu_hours']} CPU-hours ({_basis(manifest)}); {size / 1e6:.2f} MB) -> {folder}"
    ]
    for method, left in manifest.get("left_out_outdated", {}).items():
        lines.append(
            f"left out {left['rows']} rows of {method} version {left['version']}: today's "
            f"is {left['current']}, so they are stale (run its cells again)"
        )
    return "\n".join(lines)


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
        track: Annotated[
            str | None,
            typer.Option(
                help="training, continual or federated: the track whose rows to "
                "publish, where the protocol has rows in several (default: the "
                "one that holds it)."
            ),
        ] = None,
    ) -> None:
        """Write a protocol's rows as Parquet with a manifest (commits, method versions,
        CPU-hours, checksums): a training protocol's cells with their metrics, per-example
        predictions and hardware profiles; a continual protocol's cells with their accuracy
        matrices; a federated protocol's rounds."""
        from suite.store.published import PublishedError, publish
        from suite.store.store import Store

        if not db.exists():
            fail("error:", f"no results database at {db}", 1)
        folder = out or PUBLISHED / protocol
        versions = {e.name: e.spec.version for e in catalog(None).methods if e.spec.version}
        try:
            manifest = publish(
                Store(db), protocol, folder, note=note, track=track, versions=versions
            )
        except PublishedError as exc:
            fail("error:", exc, 1)
        console.print(_published_words(manifest, protocol, folder))

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
            fail("error:", exc, 2)
        added = ", ".join(f"{v} {k}" for k, v in report.added.items())
        console.print(f"loaded {report.name} into {db}: {added}")


def register_verify(app: typer.Typer, console: Console, err_console: Console) -> None:
    """Add `peftbench verify`."""

    @app.command()
    def verify(
        published: Annotated[
            int, typer.Option("--published", min=1, help="How many published cells to rerun.")
        ],
        folder: Annotated[
            Path | None,
            typer.Option(help="The published folder (default: the league's)."),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the random choice of cells.")] = 0,
        workers: Annotated[
            int | None, typer.Option(min=1, help="At most this many Ray workers.")
        ] = None,
        local: Annotated[bool, typer.Option(help="Run in this process, not on Ray.")] = False,
        keep: Annotated[
            Path | None, typer.Option(help="Keep the scratch stores in this folder.")
        ] = None,
        plugins: Annotated[
            list[Path] | None,
            typer.Option("--plugins", help="Extra plugin folder (as for run). Repeatable."),
        ] = None,
    ) -> None:
        """Rerun N random published cells with today's code on this machine and say how far
        each moved (primary metric and per-example predictions); exit 1 if any moved beyond
        the tolerance on the same machine, or failed."""
        import tempfile

        from suite.driver import make_executor
        from suite.scheduler.resources import SchedulingError
        from suite.store.protocols import LEAGUE_PROTOCOL
        from suite.store.published import PublishedError
        from suite.verify import TOLERANCE, training_manifest
        from suite.verify import verify as run_verify

        where = folder or PUBLISHED / LEAGUE_PROTOCOL
        try:  # before anything starts: a folder that is not a published dataset is exit 2
            training_manifest(where)
        except PublishedError as exc:
            fail("error:", exc, 2)
        scratch = keep or Path(tempfile.mkdtemp(prefix="peftbench-verify-"))
        executor = make_executor("local" if local else "ray", None, scratch, workers=workers)
        try:
            moved = run_verify(catalog(plugins), where, published, seed, scratch, executor)
        except PublishedError as exc:
            fail("error:", exc, 2)
        except SchedulingError as exc:  # e.g. the embedded Ray did not start
            fail("error:", exc, 1)
        _print_moved(console, moved)
        bad = [m for m in moved if m.status in ("failed", "stale") or (
            m.status == "moved" and m.same_machine)]  # fmt: skip
        err_console.print(
            f"{len(moved) - len(bad)} of {len(moved)} reproduced (tolerance {TOLERANCE} on the "
            "primary metric on the same machine)"
        )
        raise typer.Exit(1 if bad else 0)


def _print_moved(console: Console, moved) -> None:
    from rich.table import Table

    table = Table(title="published cells rerun")
    for name in (
        "cell",
        "phase",
        "split",
        "published",
        "rerun",
        "delta",
        "changed",
        "same hw",
        "status",
    ):
        table.add_column(name)
    for m in moved:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        changed = "-" if m.changed_predictions is None else f"{m.changed_predictions}/{m.examples}"
        same = {None: "-", True: "yes", False: "no"}[m.same_machine]
        table.add_row(
            m.title, m.phase, m.split, fmt(m.published), fmt(m.rerun),
            "-" if m.delta is None else f"{m.delta:+.4f}", changed, same, m.status,
        )  # fmt: skip
    print_full(table, console)
