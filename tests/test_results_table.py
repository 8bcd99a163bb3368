"""The terminal results table fits an ordinary terminal: at 80 and 120 columns every line
fits, and no name or number is split across lines; --wide adds the cost columns."""

from __future__ import annotations

import pytest
from rich.console import Console

from suite.store.store import Store
from tests.support.demo import demo_db_copy


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Store:
    return Store(demo_db_copy(tmp_path_factory.mktemp("table") / "demo.duckdb"))


def _render(store: Store, width: int, wide: bool = False) -> list[str]:
    from suite.results_table import results_table

    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(results_table(store, "demo", wide=wide))
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 120])
def test_the_default_table_fits_without_splitting_words(demo_store, width):
    lines = _render(demo_store, width)
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    header = next(line for line in lines if line.lstrip().startswith("method"))
    for column in ("task", "seeds", "accuracy [95% CI]", "trainable", "status"):
        assert column in header, header
    rows = [line.split() for line in lines if line.lstrip().startswith(("lora", "head"))]
    assert rows, lines
    for row in rows:
        assert row[1] in ("drug-condition", "drug-sentiment"), row  # whole, not folded
        assert row[4].startswith("[") and row[5].endswith("]"), row  # mean [low, high]
    assert not any("peak memory" in line for line in lines)
    assert any("minilm-l6 on gpu-a100" in line for line in lines)  # one table per profile
    assert any("baseline on test: drug-condition 0.402" in line for line in lines)


def test_wide_adds_the_cost_columns(demo_store):
    lines = _render(demo_store, 200, wide=True)
    header = next(line for line in lines if line.lstrip().startswith("method"))
    for column in ("CI over", "peak memory", "train time", "latency unmerged/merged"):
        assert column in header, header
    assert all(len(line) <= 200 for line in lines)
