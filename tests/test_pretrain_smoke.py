"""suite/matrices/pretrain-smoke.yaml through the CLI on the real corpus (Debian's
python3.11-doc, `make corpus-deps`): every cell ok, perplexities finite and below the
uniform-vocabulary perplexity (4,096 for llama-pt-1m's BPE). Slow: minutes of CPU."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import catalog
from tests.test_cli_e2e import cli

pytestmark = pytest.mark.slow


def test_pretrain_smoke_matrix_runs_and_every_method_beats_the_uniform_model(tmp_path):
    from suite.models.loading import load_tokenizer

    uniform = len(load_tokenizer(catalog().models.get("llama-pt-1m").spec))
    db = tmp_path / "smoke.duckdb"
    run = cli("run", "pretrain-smoke", "--db", str(db), "--executor", "local")
    assert run.returncode == 0, run.stderr[-4000:]
    out = cli(
        "query",
        "select method, status, train_steps, val_perplexity, test_perplexity, tokens_per_s "
        "from results order by method",
        "--db", str(db), "--format", "json",
    )  # fmt: skip
    rows = json.loads(out.stdout)
    assert {r["method"] for r in rows} == {"full-rank", "low-rank", "sltrain", "sst", "lost"}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["train_steps"] == 204_800 // (8 * 256)
        for split in ("val_perplexity", "test_perplexity"):
            assert math.isfinite(r[split]) and 1 < r[split] < uniform, r
        assert r["tokens_per_s"] > 0
