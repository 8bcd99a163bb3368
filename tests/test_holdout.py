"""A method may hold out part of the training split for its own outer loop: the runner
takes a fixed slice out of the training stream, hands it over, and records its size."""

from __future__ import annotations

import textwrap

from suite.cells import expand
from suite.registry import Catalog
from suite.scheduler.local import LocalExecutor
from suite.specs.matrix import MatrixSpec

IMPL = """
from suite.methods.api import Method, MethodParams, Prepared, StepHooks

SEEN = {}


class Params(MethodParams):
    fraction: float = 0.25


class HoldsOut(Method):
    Params = Params

    def train_holdout(self):
        return self.params.fraction

    def prepare(self, model, ctx):
        batch = next(ctx.holdout_batches())
        SEEN["holdout_ids"] = batch["input_ids"]
        return Prepared(model=model)

    def expected_trainable_params(self, shapes):
        return 0
"""


def test_held_out_examples_leave_the_training_stream_and_are_recorded(tiny_plugins, tmp_path):
    folder = tmp_path / "methods" / "holds-out"
    folder.mkdir(parents=True)
    (folder / "impl.py").write_text(IMPL)
    (folder / "method.yaml").write_text(
        textwrap.dedent("""\
        name: holds-out
        implementation: impl.py:HoldsOut
        fidelity: reconstructed
        version: 1
        """)
    )
    catalog = Catalog.discover([tiny_plugins, tmp_path])
    matrix = MatrixSpec(
        name="h", models=["tiny-bert"], methods=["holds-out", "head"], tasks=["drug-condition"],
        seeds=[0], budget={"max_steps": 1, "batch_size": 4},
    )  # fmt: skip
    cells = expand(matrix, catalog)
    reports = {}
    LocalExecutor()(cells, lambda cell, report: reports.__setitem__(cell.method.label, report))
    held = reports["holds-out"].measured
    plain = reports["head"].measured
    assert held.status == "ok", held.error
    n_held = held.measurements.train_holdout_examples
    assert n_held and plain.measurements.train_holdout_examples is None
    from suite.train import caches

    total = len(caches.encoded(cells[0].task, cells[0].task_dir, cells[0].model)["train"])
    assert n_held == round(0.25 * total)
