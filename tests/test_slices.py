"""A slice of a matrix runs exactly the cells the whole matrix would, and only those."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from suite.cli import app
from suite.driver import plan
from suite.errors import SpecError
from suite.registry import Catalog
from suite.slices import Slice
from suite.store.store import Store


@pytest.fixture(scope="module")
def catalog():
    return Catalog.discover([])


def test_a_tuned_slice_plans_a_subset_of_the_whole_matrix_ids(catalog, tmp_path):
    store = Store(tmp_path / "r.duckdb")
    whole = plan(catalog, "league", store)
    part = plan(
        catalog, "league", store, only=Slice.of(tasks=["rotten-tomatoes"], methods=["lora", "dora"])
    )
    assert len(part.cells) == 2 * 4  # two methods x 4 trials on one task
    assert {c.cell_id for c in part.cells} <= {c.cell_id for c in whole.cells}
    assert {(c.task.name, c.method.label) for c in part.cells} == {
        ("rotten-tomatoes", "lora"),
        ("rotten-tomatoes", "dora"),
    }


def test_an_untuned_slice_by_seed_and_method(catalog, tmp_path):
    store = Store(tmp_path / "r.duckdb")
    whole = plan(catalog, "smoke", store)
    part = plan(catalog, "smoke", store, only=Slice.of(methods=["lora"]))
    assert [c.cell_id for c in part.cells] == [
        c.cell_id for c in whole.cells if c.method.label == "lora"
    ]


def test_every_name_the_matrix_lacks_is_reported_at_once(catalog, tmp_path):
    with pytest.raises(SpecError) as info:
        plan(
            catalog,
            "smoke",
            Store(tmp_path / "r.duckdb"),
            only=Slice.of(methods=["lorra", "nope"], seeds=[7]),
        )
    text = str(info.value)
    assert "unknown method in this matrix 'lorra'; did you mean 'lora'?" in text
    assert "'nope'" in text and "unknown seed in this matrix '7'" in text


def test_the_cli_refuses_a_bad_slice_before_running_anything(tmp_path):
    db = tmp_path / "r.duckdb"
    result = CliRunner().invoke(app, ["run", "smoke", "--method", "lorra", "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert "did you mean 'lora'?" in result.output
    assert not db.exists()


def test_a_dry_run_lists_the_cells_to_run_and_runs_none(catalog, tmp_path):
    db = tmp_path / "r.duckdb"
    args = ["run", "smoke", "--method", "lora", "--dry-run", "--db", str(db)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    listed = [line for line in result.output.splitlines() if "  seed " in line]
    cells = plan(catalog, "smoke", Store(db), only=Slice.of(methods=["lora"])).todo
    assert listed and len(listed) == len(cells)  # still all to run: nothing was stored
    assert all("  lora  " in line for line in listed)
