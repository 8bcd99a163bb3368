"""Trained and post-hoc cells are two kinds of `Workload`: the worker runs and the driver
stores each through one registry entry (suite/cell_kinds.py), and a post-hoc stage's
kind is an entry too (STAGE_KINDS, STAGE_RUNS), not a branch on its name."""

from __future__ import annotations

from typing import ClassVar

import pytest

from suite.cell_kinds import CELL_KINDS, CellKind, cell_kind
from suite.cells import Cell
from suite.driver import Plan, run_plan
from suite.posthoc.cells import PosthocCell
from suite.results import CellReport, Measured, Placement
from suite.specs.posthoc import STAGE_KINDS, StageKind
from suite.store.store import Store
from tests.support.demo import demo_cells, demo_posthoc_cells


class EchoCell(Cell):
    """A new kind of work, as a plugin would add it: one registry entry, nothing else."""

    kind: ClassVar[str] = "echo"


def _echo(cell: Cell) -> EchoCell:
    return EchoCell(**dict(cell))


def test_the_kind_is_a_class_attribute_so_no_id_moves():
    trained, posthoc = demo_cells()[0], demo_posthoc_cells()[0]
    assert (trained.kind, posthoc.kind) == ("trained", "posthoc")
    assert "kind" not in trained.model_dump() and "kind" not in posthoc.model_dump()
    assert _echo(trained).cell_id == trained.cell_id
    # A post-hoc cell no longer passes for a trained one.
    assert not hasattr(posthoc, "task") and not hasattr(posthoc, "phase")


def test_an_unknown_kind_is_refused_by_name():
    with pytest.raises(TypeError, match="EchoCell is no kind of cell .*'echo'.*trained, posthoc"):
        cell_kind(_echo(demo_cells()[0]))


def test_worker_and_driver_dispatch_on_the_kind(tmp_path, monkeypatch):
    from suite.scheduler.worker import CellWorker

    seen: list[str] = []
    kind = CellKind(
        run=lambda cell, on_step: seen.append("run") or Measured(status="ok"),
        record=lambda store, cell, report, prov, log: seen.append("record") or report.measured,
    )
    monkeypatch.setitem(CELL_KINDS, "echo", kind)
    monkeypatch.setattr(CellWorker, "placement", lambda self, cell: Placement())
    cell = _echo(demo_cells()[0])
    report = CellWorker().run(cell)
    assert report.measured.status == "ok"

    class Handing:  # an executor that hands back the worker's report
        def prepare(self, cells):
            pass

        def __call__(self, cells, on_result):
            for c in cells:
                on_result(c, CellReport(measured=Measured(status="ok")))

        def close(self):
            pass

    summary = run_plan(Plan("m", [cell], [cell]), Store(tmp_path / "s.duckdb"), Handing())
    assert seen == ["run", "record"]
    assert [r.status for r in summary.results] == ["ok"]


def test_a_stage_kind_is_read_from_the_registry(monkeypatch):
    merges = [c for c in demo_posthoc_cells() if c.method.stage == "merge"]
    assert merges and all(len(c.inputs) == 2 for c in merges)
    # Asking for three tasks per merge leaves the demo's two-task groups out.
    monkeypatch.setitem(
        STAGE_KINDS,
        "merge",
        StageKind(("model.name", "seed"), min_inputs=3, calibrated=False, view="merging"),
    )
    assert [c for c in demo_posthoc_cells() if c.method.stage == "merge"] == []


def test_every_stage_kind_runs():
    from suite.posthoc.run import STAGE_RUNS

    assert set(STAGE_RUNS) == set(STAGE_KINDS)
    assert isinstance(demo_posthoc_cells()[0], PosthocCell)


# posthoc-smoke's first post-hoc cell ids as the code before cell kinds gave them
# (6b315c8): a kind is a class attribute, never hashed.
POSTHOC_SMOKE = ["95c804cfabdc6429", "518a5ed74aea475e", "611f19c3f9c1fa7d", "08a3133b5a7e66e6"]


def test_post_hoc_cell_ids_do_not_move():
    from suite.cells import expand
    from suite.posthoc.cells import posthoc_cells
    from tests.helpers import catalog

    cat = catalog()
    entry = cat.matrix_from_path_or_name("posthoc-smoke")
    cells = posthoc_cells(entry.spec, cat, expand(entry.spec, cat, entry), entry)
    assert [c.cell_id for c in cells][: len(POSTHOC_SMOKE)] == POSTHOC_SMOKE
