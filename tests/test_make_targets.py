"""The Makefile's test targets: what CI runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str) -> list[str]:
    """The shell lines `make -n TARGET` would run (install steps made no-ops)."""
    out = subprocess.run(
        ["make", "-n", target, "STAMP=Makefile", "VENV=.venv-dry"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if "-m pytest" in line]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["test", "test-fast"])
def test_golden_tests_run_again_on_one_thread(target):
    """A golden test that passes on the machine's thread count and fails on one thread
    (or the reverse) fails the target: the subset runs twice, the second time with one
    thread for OpenMP, MKL and OpenBLAS, and both runs fail on 'no tests collected'."""
    lines = dry_run(target)
    assert len(lines) == 2, lines
    full, golden = lines
    assert "test_golden_" not in full and "OMP_NUM_THREADS" not in full
    for var in ("OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"):
        assert var in golden
    assert "tests/test_golden_*.py" in golden
    for line in lines:
        assert "$rc -eq 5" in line and line.rstrip().endswith("exit $rc")
