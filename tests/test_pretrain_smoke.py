"""suite/matrices/pretrain-smoke.yaml through the CLI on the real corpus (Debian's
python3.11-doc, `make corpus-deps`), on a fifth of its token budget (20 steps, to keep
CI short; the full smoke run is `peftbench run pretrain-smoke`): every cell ok,
perplexities finite and below the uniform-vocabulary perplexity (4,096 for
llama-pt-1m's BPE). Slow: minutes of CPU."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from suite.paths import CHECKOUT
from tests.helpers import catalog
from tests.test_cli_e2e import cli

pytestmark = pytest.mark.slow
STEPS = 20


def test_pretrain_smoke_matrix_runs_and_every_method_beats_the_uniform_model(tmp_path):
    from suite.models.loading import load_tokenizer

    uniform = len(load_tokenizer(catalog().models.get("llama-pt-1m").spec))
    matrix = yaml.safe_load((CHECKOUT / "suite/matrices/pretrain-smoke.yaml").read_text())
    matrix["budget"]["tokens"] = STEPS * 8 * 256
    path = tmp_path / "pretrain-smoke.yaml"
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    db = tmp_path / "smoke.duckdb"
    run = cli("run", str(path), "--db", str(db), "--executor", "local", timeout_s=1800)
    assert run.returncode == 0, run.stderr[-4000:]
    out = cli(
        "query",
        "select method, status, train_steps, val_perplexity, test_perplexity, tokens_per_s "
        "from results order by method",
        "--db", str(db), "--format", "json",
    )  # fmt: skip
    rows = json.loads(out.stdout)
    assert {r["method"] for r in rows} == {
        "full-rank",
        "low-rank",
        "sltrain",
        "sst",
        "lost",
        "cast",
    }
    for r in rows:
        assert r["status"] == "ok", r
        assert r["train_steps"] == STEPS
        for split in ("val_perplexity", "test_perplexity"):
            assert math.isfinite(r[split]) and 1 < r[split] < uniform, r
        assert r["tokens_per_s"] > 0
