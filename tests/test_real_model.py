"""A real pretrained model through the CLI: all-MiniLM-L6-v2 (shipped offline by a PyPI
package) with LoRA on drug-condition must beat the majority baseline (0.402) by at least
10 points of test accuracy (the smoke matrix's LoRA cell: 5 epochs, about 75 steps)."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.test_cli_e2e import cli

MAJORITY = 0.402


@pytest.mark.slow
def test_minilm_lora_beats_the_majority_baseline_by_ten_points(tmp_path):
    matrix = tmp_path / "real.yaml"
    matrix.write_text(
        textwrap.dedent("""\
        name: real
        models: [minilm-l6]
        methods: [lora]
        tasks: [drug-condition]
        seeds: [0]
        budget: {epochs: 5, batch_size: 16, warmup_ratio: 0.06, grad_clip: 1.0}
        """)
    )
    db = tmp_path / "real.duckdb"
    # Minutes of real training: a generous limit, so a busy CI machine is slow, not failing.
    run = cli("run", str(matrix), "--db", str(db), "--executor", "local", timeout_s=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    out = cli(
        "query", "select status, test_accuracy, baseline_test_primary, fidelity from results",
        "--db", str(db), "--format", "json",
    )  # fmt: skip
    (row,) = json.loads(out.stdout)
    assert row["status"] == "ok" and row["fidelity"] == "reference"
    assert row["baseline_test_primary"] == pytest.approx(MAJORITY, abs=1e-3)
    assert row["test_accuracy"] >= MAJORITY + 0.10, row
