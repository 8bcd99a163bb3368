"""Fault isolation on an embedded Ray: each failure gets its own status, the rest go on."""

from __future__ import annotations

from pathlib import Path

from tests.scheduler_helpers import FAULT_PLUGINS, rows, run_cli, write_matrix

EXPECTED = {
    "head": "ok",
    "lora": "ok",
    "test-raise": "failed",
    "test-nan": "nan",
    "test-sleep": "timeout",
    "test-kill": "crashed",
}


def test_faults_are_isolated_on_ray(tiny_plugins: Path, tmp_path: Path):
    matrix = write_matrix(tmp_path, "faults", list(EXPECTED), timeout_s=45)
    db = tmp_path / "results" / "r.duckdb"
    out = run_cli(matrix, db, [tiny_plugins, FAULT_PLUGINS], "--max-retries", "1")
    assert out.returncode == 1, out.stderr[-3000:]  # not every cell succeeded
    assert "6 to run" in out.stderr

    got = rows(db, "select method, status, error, attempts, log_path from cell_runs")
    assert len(got) == len(EXPECTED)  # one row per cell: no duplicates, none lost
    by_method = {m: (s, e, a, log) for m, s, e, a, log in got}
    assert {m: v[0] for m, v in by_method.items()} == EXPECTED
    assert "deliberate failure" in by_method["test-raise"][1]
    assert "nan" in by_method["test-nan"][1]
    assert "timeout" in by_method["test-sleep"][1]
    assert by_method["test-kill"][2] == 2  # first attempt + one retry, then crashed
    for _, _, _, log in by_method.values():
        assert Path(log).is_file()

    ok = rows(
        db,
        "select node_id, hardware_profile_id, device_mismatch, flops_fraction_of_peak "
        "from cell_runs where status = 'ok'",
    )
    assert all(r[0] and r[1] and r[2] is False and 0 < r[3] < 1 for r in ok)
    profiles = rows(db, "select device_type, cpu_cores, matmul_flops from hardware_profiles")
    assert profiles and all(p[0] == "cpu" and p[1] >= 1 and p[2] > 0 for p in profiles)
    linked = rows(
        db,
        "select count(*) from cell_runs r join hardware_profiles p "
        "on r.hardware_profile_id = p.profile_id",
    )
    assert linked[0][0] >= 2


def test_infeasible_profile_is_reported_before_anything_runs(tiny_plugins: Path, tmp_path: Path):
    matrix = write_matrix(tmp_path, "gpu", ["head"], profile="h100-80gb")
    db = tmp_path / "results" / "r.duckdb"
    out = run_cli(matrix, db, [tiny_plugins])
    assert out.returncode == 4, out.stderr[-3000:]
    assert "h100-80gb" in out.stderr and "no node has that" in out.stderr
    assert not db.exists()
