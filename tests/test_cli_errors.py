"""How the CLI fails: typed options exit 2, error lines carry no literal markup, a bad
matrix override is reported at the matrix, a busy store during planning exits 3."""

from __future__ import annotations

import textwrap

import duckdb

from tests.test_cli_e2e import cli


def test_an_unknown_executor_is_a_usage_error():
    out = cli("run", "--executor", "bogus")
    assert out.returncode == 2
    assert "bogus" in out.stderr and "'ray'" in out.stderr


def test_error_lines_print_no_literal_markup(tmp_path):
    db = tmp_path / "r.duckdb"
    duckdb.connect(str(db)).close()
    for args in (
        ("query", "--view", "nope", "--db", str(db)),
        ("query", "select * from no_such_table", "--db", str(db)),
        ("query", "--db", str(db)),
        ("report", "--html", str(tmp_path / "x.html"), "--db", str(tmp_path / "none.duckdb")),
        ("table", "--db", str(tmp_path / "none.duckdb")),
    ):
        out = cli(*args)
        assert out.returncode != 0, args
        assert "[bold" not in out.stdout + out.stderr and "[/]" not in out.stderr, out.stderr
    assert "unknown view 'nope'" in cli("query", "--view", "nope", "--db", str(db)).stderr
    assert cli("query", "--view", "nope", "--db", str(db)).returncode == 2


def test_a_bad_override_is_reported_at_the_matrix_line(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        textwrap.dedent("""\
        name: m
        models: [minilm-l6]
        methods:
          - lora
          - {method: lora, label: bad, params: {alpha: nope}}
        tasks: [drug-condition]
        """)
    )
    out = cli("run", str(matrix))
    assert out.returncode == 2
    assert f"{matrix}:5: params.alpha:" in out.stderr, out.stderr
    assert "method.yaml" not in out.stderr


def test_a_store_busy_while_planning_exits_3(tmp_path):
    db = tmp_path / "busy.duckdb"
    holder = duckdb.connect(str(db))  # this process holds the file for writing
    try:
        import os
        import subprocess
        import sys

        from tests.test_cli_e2e import REPO

        env = {**os.environ, "PEFTBENCH_LOCK_WAIT_S": "0.5"}
        out = subprocess.run(
            [sys.executable, "-m", "suite.cli", "run", "smoke", "--db", str(db)],
            cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
    finally:
        holder.close()
    assert out.returncode == 3, out.stderr[-2000:]
    assert "held by another process" in out.stderr and "Traceback" not in out.stderr


def test_table_of_a_matrix_shows_the_cells_another_matrix_stored(tiny_plugins, tmp_path):
    """Cells dedupe across matrices: `table --matrix` (and the table `run` prints) lists
    the matrix's cells by id, whichever matrix ran them first."""
    second = tmp_path / "tiny-again.yaml"
    second.write_text(
        textwrap.dedent("""\
        name: tiny-again
        models: [tiny-bert]
        methods: [lora]
        tasks: [drug-condition]
        seeds: [0]
        budget: {max_steps: 3, batch_size: 8}
        """)
    )
    db = tmp_path / "t.duckdb"
    plugins = ("--plugins", str(tiny_plugins), "--db", str(db), "--executor", "local")
    assert cli("run", "tiny", *plugins).returncode == 0
    again = cli("run", str(second), *plugins)
    assert again.returncode == 0 and "1 already stored ok, 0 to run" in again.stderr
    assert "lora" in again.stdout and "drug-condition" in again.stdout
    table = cli("table", "--matrix", str(second), "--plugins", str(tiny_plugins), "--db", str(db))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    rows = [line for line in lines if "drug-condition" in line and "baseline on test" not in line]
    assert len(rows) == 1 and "lora" in rows[0]
