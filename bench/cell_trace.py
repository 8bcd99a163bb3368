"""The path of one trained cell through the suite's modules, traced on a real run.

A tiny LoRA cell (a random 2-layer BERT, drug-condition, --steps training steps) runs in
this process through the workers' code path (`CellWorker.run`, as both executors call
it). A profile hook records every call into a module of suite/ whose arguments include
the cell (as `self` too): the path the `cell` parameter takes, which is what issue 26
counts. `--follow parts` also follows the specs the cell holds (its model, task, method,
budget, profile) where they are passed on alone; `--follow all` records every call into
suite/ (helpers that never see the cell included).

From the sequence of modules entered (a call within the module it is made from is no
entry) it prints:

  modules  the distinct suite modules the cell visits;
  returns  how many times the trace enters a module it had entered before and left
           (a module the cell keeps coming back to is a hop a pipeline would not make);

then the sequence itself, one module a line, a re-entry marked with `*`. The worker's
first cell also calibrates the hardware (suite/scheduler/hardware.py); a warm-up cell runs
first (untraced) so the trace is that of a worker's later cell.

Usage: PYTHONPATH=. .venv/bin/python bench/cell_trace.py [--steps 2] [--follow cell|parts|all]
           [--names] [--cold]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suite"
sys.path.insert(0, str(REPO))


def tiny_cell(steps: int, folder: Path):
    """The tiny-bert LoRA cell (the tests' tiny cell, suite/conformance_bench.py)."""
    from suite.cells import expand
    from suite.conformance_bench import write_tiny_bert_plugin
    from suite.registry import Catalog
    from suite.specs.matrix import Budget, MatrixSpec

    root = write_tiny_bert_plugin(folder, Catalog.discover())
    matrix = MatrixSpec(
        name="trace", models=["tiny-bert"], methods=["lora"], tasks=["drug-condition"],
        seeds=[0], budget=Budget(max_steps=steps, batch_size=8),
    )  # fmt: skip
    (cell,) = expand(matrix, Catalog.discover([root]))
    return cell


def _module(code) -> str | None:
    """`suite/train/runner` for a code object of suite/, else None."""
    path = Path(code.co_filename)
    if not path.is_relative_to(SUITE):
        return None
    return str(path.relative_to(REPO).with_suffix(""))


def _takes(frame, targets: set[int]) -> bool:
    """Whether one of the frame's arguments is one of `targets` (by identity, on entry)."""
    code = frame.f_code
    n = code.co_argcount + code.co_kwonlyargcount
    return any(id(frame.f_locals.get(name)) in targets for name in code.co_varnames[:n])


def targets(cell, mode: str) -> set[int] | None:
    """The objects whose calls are traced: the cell; with its parts, also the specs it
    holds (model, task, method, budget, profile); None: every call."""
    from pydantic import BaseModel

    if mode == "all":
        return None
    found = {id(cell)}
    if mode == "parts":  # specs only: a number or a string may be any other one's twin
        parts = (getattr(cell, name) for name in type(cell).model_fields)
        found |= {id(part) for part in parts if isinstance(part, BaseModel)}
    return found


def trace(run, cell, mode: str, named: bool = False) -> list[str]:
    """The modules entered while `run()` runs, consecutive repeats folded (`named`: with
    the function entered, module:function)."""
    entered: list[str] = []
    followed = targets(cell, mode)

    def hook(frame, event, _arg):
        if event != "call":
            return
        module = _module(frame.f_code)
        if module is None or (followed is not None and not _takes(frame, followed)):
            return
        if not entered or entered[-1].split(":")[0] != module:
            entered.append(f"{module}:{frame.f_code.co_name}" if named else module)

    sys.setprofile(hook)
    try:
        run()
    finally:
        sys.setprofile(None)
    return entered


def counts(entered: list[str]) -> tuple[int, int, list[bool]]:
    """Distinct modules, re-entries, and which entries are re-entries."""
    seen: set[str] = set()
    again = []
    for entry in entered:
        module = entry.split(":")[0]
        again.append(module in seen)
        seen.add(module)
    return len(seen), sum(again), again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument(
        "--follow",
        choices=("cell", "parts", "all"),
        default="cell",
        help="calls given the cell; also its specs; every suite call",
    )
    parser.add_argument("--names", action="store_true", help="name the function entered")
    parser.add_argument("--cold", action="store_true", help="trace the worker's first cell")
    args = parser.parse_args()

    from suite.scheduler.worker import CellWorker

    with tempfile.TemporaryDirectory(prefix="cell-trace-") as tmp:
        cell = tiny_cell(args.steps, Path(tmp))
        worker = CellWorker(threads=1)
        if not args.cold:
            worker.run(cell)  # calibration, caches: a later cell's path is traced
        report: list = []
        entered = trace(lambda: report.append(worker.run(cell)), cell, args.follow, args.names)
    status = report[0].measured.status
    modules, returns, again = counts(entered)
    print(f"cell {cell.cell_id}: status {status}")
    print(f"modules {modules}")
    print(f"returns {returns}")
    for module, back in zip(entered, again, strict=True):
        print(f"  {'*' if back else ' '} {module}")


if __name__ == "__main__":
    main()
