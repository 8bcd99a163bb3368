"""The app keeps working while a matrix writes (and says so); the CLI's leaderboard and
report commands; page data on the fixture database."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leaderboard import data, pagedata, tables
from suite.cli import app as cli_app
from tests.support.demo import demo_db_copy

APP = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")

# A second process that writes one row and keeps the database open, as a matrix run does
# between (and, on a slow disk, during) its write windows.
WRITER = textwrap.dedent("""
    import sys, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute(
        "INSERT INTO cell_runs SELECT * REPLACE (uuid()::VARCHAR AS result_id, "
        "'busy-cell' AS cell_id) FROM cell_runs LIMIT 1"
    )
    print("ready", flush=True)
    sys.stdin.read()
    con.close()
""")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    return demo_db_copy(tmp_path_factory.mktemp("data") / "demo.duckdb")


def test_app_keeps_working_while_a_matrix_writes(db, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PEFTBENCH_DB", str(db))
    monkeypatch.setattr(data, "WAIT_S", 0.5)
    at = AppTest.from_file(APP, default_timeout=120).run()
    runs_before = data.freshness(data.Reader(db)).n_runs
    assert any(f"{runs_before:,} cell runs" in c.value for c in at.sidebar.caption)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        at.run()
        assert not at.exception, at.exception
        assert len(at.dataframe[0].value) == 11  # the last complete read
        assert any("A matrix is writing" in w.value for w in at.sidebar.warning)
    finally:
        writer.communicate("", timeout=60)
    data.forget_busy()
    at.run()
    assert not at.exception and not at.sidebar.warning
    assert any(f"{runs_before + 1:,} cell runs" in c.value for c in at.sidebar.caption)


def test_reader_serves_last_read_when_busy_and_fails_cold(db, tmp_path):
    reader = data.Reader(db, wait_s=0.2)
    first = reader.read("SELECT count(*) AS n FROM leaderboard")
    assert not first.busy
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout.readline().strip() == b"ready"
        stale = reader.read("SELECT count(*) AS n FROM leaderboard")
        assert stale.busy and stale.read_at == first.read_at
        data.forget_busy()
        with pytest.raises(data.StoreBusy):
            reader.read("SELECT 42 AS never_read_before")
    finally:
        writer.communicate(b"", timeout=60)
    data.forget_busy()


def test_page_data_uses_task_yaml_metric_and_whitelisted_axes(db):
    reader = data.Reader(db)
    metric = pagedata.primary_metric(reader, "drug-condition")
    assert (metric.display, metric.higher_is_better) == ("Accuracy", True)
    filters = pagedata.Filters("drug-condition", "minilm-l6", "cpu-local")
    points = pagedata.pareto_data(reader, filters, "trainable_params")
    assert {"lr", "params", "cell_ids_text", "on_front"} <= set(points.columns)
    with pytest.raises(ValueError, match="unknown cost axis"):
        pagedata.pareto_data(reader, filters, "trainable_params; DROP TABLE cell_runs")
    evil = pagedata.Filters("x' OR '1'='1", "minilm-l6")
    assert pagedata.leaderboard_rows(reader, evil).empty  # bound, not spliced


def test_report_command_writes_one_html_file(db, tmp_path):
    out = tmp_path / "share" / "report.html"
    result = CliRunner().invoke(cli_app, ["report", "--html", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    # per task: the overview and one Pareto chart per cost axis (the demo has data on each)
    assert text.count("vegaEmbed(") == 2 * (1 + len(pagedata.COST_AXES))
    assert "drug-condition on minilm-l6" in text and "drug-sentiment on minilm-l6" in text
    assert "lora-r16" in text and "<table" in text
    # offline: the plotting library is in the file, once, and nothing loads from the web
    assert "<script src" not in text and "cdn.jsdelivr" not in text
    assert text.count("window.vegaEmbed=") == 1
    # the header says what the table's "Interval over" column says, not "t over seeds"
    assert "t-interval over seeds;" not in text and "bootstrap over the test examples" in text


def test_leaderboard_command_binds_loopback_and_prints_url(db, monkeypatch):
    from leaderboard import serve

    seen = {}

    class FakePopen:
        def __init__(self, cmd, env, **_options):
            seen["cmd"], seen["env"] = cmd, env

        def wait(self):
            return 0

    monkeypatch.setattr(serve.subprocess, "Popen", FakePopen)
    result = CliRunner().invoke(cli_app, ["leaderboard", "--db", str(db), "--port", "8765"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8765" in result.output
    cmd = seen["cmd"]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert seen["env"]["PEFTBENCH_DB"] == str(db.resolve())


def test_leaderboard_plugins_reach_the_method_page(db, monkeypatch, tmp_path):
    """`--plugins DIR` goes to the Streamlit child (PEFTBENCH_PLUGINS, absolute, ahead of
    one already set), and the app's catalogue then knows the user's method."""
    from leaderboard import catalog, serve

    folder = tmp_path / "my-plugins" / "methods" / "lora-r16-attn"
    folder.mkdir(parents=True)
    (folder / "method.yaml").write_text(
        "name: lora-r16-attn\nkind: lora\nfamily: low-rank\n"
        "params: {r: 16, alpha: 32, targets: attention}\n"
    )
    seen = {}

    class FakePopen:
        def __init__(self, cmd, env, **_options):
            seen["env"] = env

        def wait(self):
            return 0

    monkeypatch.setattr(serve.subprocess, "Popen", FakePopen)
    elsewhere = tmp_path / "elsewhere"  # a folder that exists: a missing one is an error
    elsewhere.mkdir()
    monkeypatch.setenv("PEFTBENCH_PLUGINS", str(elsewhere))
    monkeypatch.chdir(tmp_path)
    args = ["leaderboard", "--db", str(db), "--plugins", "my-plugins"]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    given = seen["env"]["PEFTBENCH_PLUGINS"]
    assert given == os.pathsep.join([str((tmp_path / "my-plugins").resolve()), str(elsewhere)])
    monkeypatch.setenv("PEFTBENCH_PLUGINS", given)
    catalog._catalog.cache_clear()
    try:
        info = catalog.method_info("lora-r16-attn")
    finally:
        catalog._catalog.cache_clear()
    assert info is not None and info.name == "lora-r16-attn"


def test_identical_machines_are_listed_once_in_words(db, tmp_path):
    """Four workers on the same kind of machine record four hardware profiles (hex ids,
    noisy calibration): the Hardware page lists the machine once, in words, with 4."""
    import duckdb

    from leaderboard import hardware

    copy = tmp_path / "four.duckdb"
    copy.write_bytes(db.read_bytes())
    with duckdb.connect(str(copy)) as con:
        one = con.execute("SELECT profile_id FROM hardware_profiles LIMIT 1").fetchone()[0]
        for i in range(3):
            con.execute(
                "INSERT INTO hardware_profiles SELECT * REPLACE (? AS profile_id, "
                "? AS hostname, matmul_flops * ? AS matmul_flops) FROM hardware_profiles "
                "WHERE profile_id = ?",
                [f"{i:016x}", f"node-{i}", 1 + i / 100, one],
            )
    machines = hardware.recorded(data.Reader(copy))
    row = machines[machines["machines"] == 4]
    assert len(row) == 1 and len(machines) == 2
    words = row["machine"].iloc[0]
    assert "cores" in words and "GiB RAM" in words
    # The RAM as the Recorded hardware table's RAM column reads it (23.5 GiB, not 24).
    assert tables.describe_hardware({"cpu": "AMD EPYC", "ram_bytes": 25276194816}) == (
        "AMD EPYC; 23.5 GiB RAM"
    )
    epyc = {"cpu_model": "AMD EPYC", "cpu_cores": 2, "ram_bytes": 25276194816}
    assert hardware.machine_words(epyc) == "AMD EPYC, 2 cores; 23.5 GiB RAM"
    assert not any(f"{i:016x}" in " ".join(map(str, row.iloc[0])) for i in range(3))


def test_cli_start_up_does_not_import_streamlit():
    code = "import sys, suite.cli; print('streamlit' in sys.modules, 'altair' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_snapshot_views_match_the_store_views(db):
    """Views evaluated in memory over the copied leaderboard equal the file's views."""
    import duckdb

    from leaderboard.snapshot import SNAPSHOT_VIEWS, Snapshot

    reader = data.Reader(db)
    snap = Snapshot(version=("test",))
    snap.ensure(sorted(SNAPSHOT_VIEWS), reader.connect)
    assert snap.has(sorted(SNAPSHOT_VIEWS))
    con = duckdb.connect(str(db), read_only=True)
    try:
        for name in sorted(SNAPSHOT_VIEWS):
            from_file = con.execute(f'SELECT * FROM "{name}"').df()
            copied = snap.query(f'SELECT * FROM "{name}"', [])
            assert list(copied.columns) == list(from_file.columns), name
            keys = [c for c in from_file.columns if from_file[c].map(type).eq(str).all()]
            a = from_file.sort_values(keys).reset_index(drop=True)
            b = copied.sort_values(keys).reset_index(drop=True)
            assert len(a) == len(b), name
            for col in a.columns:
                if pd.api.types.is_float_dtype(a[col]):
                    # DuckDB's parallel aggregation may sum in another order: last-ulp noise.
                    assert np.allclose(a[col], b[col], rtol=1e-12, equal_nan=True), (name, col)
                else:
                    assert a[col].astype(str).equals(b[col].astype(str)), (name, col)
    finally:
        con.close()
