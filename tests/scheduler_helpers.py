"""Helpers for the scheduler tests: tiny matrices, CLI runs, reading the results file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
FAULT_PLUGINS = REPO / "tests" / "plugins"


def write_matrix(folder: Path, name: str, methods: list[str], **extra) -> Path:
    """A tiny-bert x drug-condition matrix with a 2-step budget."""
    seeds = extra.pop("seeds", [0])
    lines = [
        f"name: {name}",
        "models: [tiny-bert]",
        f"methods: [{', '.join(methods)}]",
        "tasks: [drug-condition]",
        f"seeds: {list(seeds)}",
        "budget: {max_steps: 2, batch_size: 8}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent("\n".join(lines)) + "\n")
    return path


def cli_args(matrix: Path, db: Path, plugins: list[Path], *extra: str) -> list[str]:
    args = [sys.executable, "-m", "suite.cli", "run", str(matrix), "--db", str(db)]
    for p in plugins:
        args += ["--plugins", str(p)]
    return args + list(extra)


def run_cli(matrix: Path, db: Path, plugins: list[Path], *extra: str, timeout: int = 600):
    return subprocess.run(
        cli_args(matrix, db, plugins, *extra),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(db: Path, sql: str, wait_s: float = 30.0) -> list[tuple]:
    """Read-only query, retried while a writer holds the file (as a reader must)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
