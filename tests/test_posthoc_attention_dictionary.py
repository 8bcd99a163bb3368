"""Scatterbrain and CoSpaDi through the driver on the tiny BERT: a trained LoRA cell,
then both compress stages, stored ok with their level, storage and scores."""

from __future__ import annotations

import duckdb
import pytest

from suite.driver import in_process_executor, plan, run_plan
from suite.registry import Catalog
from suite.store.store import Store

MATRIX = """\
name: posthoc-new
models: [tiny-bert]
methods: [lora]
tasks: [drug-condition]
seeds: [0]
budget: {max_steps: 2, batch_size: 8}
posthoc:
  - name: compress
    stage: compress
    inputs: {method: lora}
    calibration: {examples: 8, batch_size: 4}
    methods:
      - {method: scatterbrain, params: {local_context: 4, nb_features: 4}}
      - {method: cospadi, params: {targets: attention, iterations: 1}}
"""


@pytest.mark.slow
def test_both_stages_run_and_store_their_rows(tiny_plugins, tmp_path):
    path = tmp_path / "posthoc-new.yaml"
    path.write_text(MATRIX)
    db = tmp_path / "results" / "r.duckdb"
    store = Store(db)
    the_plan = plan(Catalog.discover([tiny_plugins]), str(path), store)
    run_plan(the_plan, store, in_process_executor(results_dir=db.parent))
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "select method, status, error, level, sparsity from posthoc_runs order by method"
        ).fetchall()
    finally:
        con.close()
    assert [r[:2] for r in rows] == [("cospadi", "ok"), ("scatterbrain", "ok")], rows
    (_, _, _, level, sparsity), (_, _, _, band_level, band_sparsity) = rows
    # CoSpaDi removes at least 30% of the attention projections' values (k, s rounded down)
    assert level == pytest.approx(0.3) and sparsity >= 0.3
    # Scatterbrain: a 4-key band leaves most scores to the features; no weight is removed
    assert 0.5 < band_level < 1 and band_sparsity is None
