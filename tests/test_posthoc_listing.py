"""`peftbench run`'s closing post-hoc table reads the stored rows (list columns arrive as
arrays) without failing, one row per post-hoc cell and source task."""

from __future__ import annotations

from rich.console import Console

from suite.listing import posthoc_table
from suite.store.store import Store
from tests.support.demo import demo_db_copy


def test_the_posthoc_table_prints_every_cell_and_task(tmp_path):
    store = Store(demo_db_copy(tmp_path / "demo.duckdb"))
    ids = [r[0] for r in store.query("SELECT cell_id FROM posthoc_results").itertuples(index=False)]
    table = posthoc_table(store, "demo", ids)
    console = Console(width=250, record=True)
    console.print(table)
    text = console.export_text()
    # 5 merges x 3 seeds x 2 tasks, less the refused one's 2 (1 row), + 11 compressions
    assert table.row_count == 5 * 3 * 2 - 1 + 11
    assert "lora+lora" in text  # the inputs of a merge
    assert "input_missing" in text and "2:4" in text
