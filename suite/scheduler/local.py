"""The in-process executor (`peftbench run --executor local`): no Ray, one cell at a time.

The escape hatch for debugging and for machines where Ray cannot start. Timeouts use
SIGALRM in this thread; a cell that kills its own process takes the driver with it
(only the Ray executor isolates that), and a crashed or killed run resumes as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite.cells import Cell
from suite.results import CellResult
from suite.scheduler.faults import CellTimeout, alarm, timeout_result


class LocalExecutor:
    """Runs cells in this process through the same CellWorker the Ray actors use."""

    def __init__(self, progress: Any = None, results_dir: Path | None = None):
        self.progress = progress
        self.results_dir = results_dir
        self.worker_stats: list[dict[str, Any]] = []
        self._worker = None

    def __call__(self, cells: list[Cell], on_result: Callable[[Cell, CellResult], None]) -> None:
        from suite.scheduler.worker import CellWorker

        if self._worker is None:
            cache = str((self.results_dir / "cache").resolve()) if self.results_dir else None
            self._worker = CellWorker(cache_dir=cache)
        for cell in cells:
            if self.progress:
                self.progress.start_cell(cell)
            on_step = self.progress.step if self.progress else None
            start = time.monotonic()
            try:
                with alarm(cell.timeout_s):
                    result = self._worker.run(cell, on_step=on_step)
            except CellTimeout:
                result = timeout_result(cell, time.monotonic() - start, **self._where())
            on_result(cell, result)
        self.worker_stats = [self._worker.counts()]

    def _where(self) -> dict[str, Any]:
        info = self._worker.info() if self._worker else {}
        return {"hostname": info.get("hostname"), "worker_pid": info.get("pid")}
