"""Run one trained cell in this process: load -> prepare -> train -> evaluate -> measure ->
save, each phase a function of its own module, called once, in order, on the cell's clock.

The clock's phases are those the row stores (suite/results.py RUNNER_PHASES); the load
phase times its two parts (data, model) itself. What no phase covers is `other`, so the
phases add up to the cell's wall time.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import torch

from suite.cells import Cell
from suite.results import Measured, Measurements
from suite.train.costs import measure
from suite.train.evaluate import evaluate_cell
from suite.train.fit import train_cell
from suite.train.load import Setup, load, seed_everything
from suite.train.loop import NonFiniteLoss
from suite.train.phases import PhaseClock
from suite.train.prepare import Ready, prepare
from suite.train.save import save

# The phases' types and the seeding, as the federated track imports them from here.
__all__ = ["Ready", "Setup", "load", "prepare", "run_cell", "seed_everything"]


def run_cell(cell: Cell, on_step: Callable[[int, int, float], None] | None = None) -> Measured:
    """Run a cell; any exception becomes its outcome (status and error text)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    clock, cpu0 = PhaseClock(), time.process_time()
    try:
        outcome = {"status": "ok", "measurements": Measurements(**_run(cell, on_step, clock))}
    except NonFiniteLoss as exc:
        outcome = {"status": "nan", "error": str(exc)}
    except (torch.OutOfMemoryError, MemoryError) as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # so the worker's next cell starts with a clean device
        outcome = {"status": "oom", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    except Exception as exc:  # noqa: BLE001 - a failing cell must never stop the matrix
        outcome = {"status": "failed", "error": "".join(traceback.format_exception(exc))[-4000:]}
    wall = clock.elapsed()
    return Measured(
        **outcome, started_at=started, cell_wall_s=wall, phases=clock.finish(wall),
        cell_cpu_s=time.process_time() - cpu0,
        model_cached=clock.cached.get("model"), data_cached=clock.cached.get("data"),
    )  # fmt: skip


def _run(cell: Cell, on_step, clock: PhaseClock) -> dict[str, Any]:
    """The cell's measurements: each phase's fields, the phases timed as they run."""
    setup = load(cell, clock)
    with clock.phase("prepare"):
        ready = prepare(cell, setup)
    with clock.phase("train"):
        trained = train_cell(cell, setup, ready, on_step)
    with clock.phase("evaluate"):
        scores = evaluate_cell(cell, setup, ready.prepared.model)
    with clock.phase("measure"):
        costs = measure(cell, setup, ready, scores.pop("eval_sets"), scores.pop("test_forwards"))
    with clock.phase("save"):
        saved = save(cell, ready.prepared)
    return {**ready.fields, **trained, **scores, **costs, **saved}
