"""End to end through the CLI on a tiny budget: run, resume, query, export, list, validate."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path = REPO, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "suite.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_run_resume_query_export(tiny_plugins: Path, tmp_path: Path):
    db = tmp_path / "r.duckdb"
    first = cli("run", "tiny", "--plugins", str(tiny_plugins), "--db", str(db))
    assert first.returncode == 0, first.stderr + first.stdout
    assert "3 to run" in first.stderr
    for method in ("head", "lora", "bitfit"):
        assert method in first.stdout
    # Where each cell's time went, one line per cell at the end (dispatch to stored row).
    phases = first.stderr.split("where the time went (dispatch to stored row):")[1]
    for method in ("head", "lora", "bitfit"):
        assert f"\n{method} x drug-condition x tiny-bert (seed 0): " in phases

    second = cli("run", "tiny", "--plugins", str(tiny_plugins), "--db", str(db))
    assert second.returncode == 0, second.stderr
    assert "3 already stored ok, 0 to run" in second.stderr

    out = cli(
        "query",
        "select method, test_accuracy, trainable_params from results order by method",
        "--db",
        str(db),
        "--format",
        "json",
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["method"] for r in rows] == ["bitfit", "head", "lora"]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)

    con = duckdb.connect(str(db), read_only=True)
    row = con.execute(
        "select status, git_sha, versions, method_yaml, "
        "baseline_test_primary, peak_memory_bytes, adapter_bytes, train_steps, "
        "latency_unmerged_s, latency_merged_s, merge_max_abs_diff "
        "from results where method = 'lora'"
    ).fetchone()
    con.close()
    assert row[0] == "ok"
    # Run from this checkout: the row names its commit.
    assert re.fullmatch(r"[0-9a-f]{40}", row[1] or ""), row[1]
    assert "torch" in json.loads(row[2])
    assert "lora" in row[3]
    assert 0.3 < row[4] < 0.5  # the majority baseline of drug-condition is stored with the row
    assert row[5] > 0 and row[6] > 0 and row[7] == 3
    assert row[8] > 0 and row[9] > 0 and row[10] < 1e-4

    rerun = cli("run", "tiny", "--plugins", str(tiny_plugins), "--db", str(db), "--rerun")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "3 to run" in rerun.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from results").fetchone()[0] == 3
    assert con.execute("select count(*) from cell_runs").fetchone()[0] == 6
    con.close()

    export = cli("export", "--parquet", str(tmp_path / "pq"), "--db", str(db))
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "pq" / "cell_runs.parquet").is_file()
    assert (tmp_path / "pq" / "metrics.parquet").is_file()


def test_query_is_read_only(tiny_plugins: Path, tmp_path: Path):
    db = tmp_path / "r.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table t (x int)")
    con.close()
    out = cli("query", "drop table t", "--db", str(db))
    assert out.returncode == 1
    assert "read-only" in out.stderr.lower() or "read only" in out.stderr.lower()


def test_list_and_validate_repo():
    listed = cli("list", "methods")
    assert listed.returncode == 0 and "lora" in listed.stdout and "low-rank" in listed.stdout
    for kind in ("tasks", "models", "profiles", "matrices"):
        assert cli("list", kind).returncode == 0
    checked = cli(
        "validate",
        str(REPO / "methods"),
        str(REPO / "tasks"),
        str(REPO / "hardware_profiles"),
        str(REPO / "suite"),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_help_lists_every_command():
    out = cli("--help")
    for command in ("run", "list", "validate", "query", "export", "table"):
        assert command in out.stdout
