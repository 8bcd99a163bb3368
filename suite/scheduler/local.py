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

from suite.cells import Workload
from suite.paths import cell_log
from suite.results import CellReport, Placement
from suite.scheduler.faults import CellTimeout, alarm, timeout_report


class LocalExecutor:
    """Runs cells in this process through the same CellWorker the Ray actors use."""

    def __init__(self, progress: Any = None, results_dir: Path | None = None):
        self.progress = progress
        self.results_dir = results_dir
        self.log_dir: Path | None = None
        self.worker_stats: list[dict[str, Any]] = []
        self._worker = None

    def prepare(self, cells: list[Workload]) -> None:
        """Nothing to connect to: cells run in this process."""

    def close(self) -> None:
        """Nothing to release."""

    def __call__(
        self, cells: list[Workload], on_result: Callable[[Workload, CellReport], None]
    ) -> None:
        import torch

        from suite.scheduler.worker import CellWorker

        if self._worker is None:
            cache = str((self.results_dir / "cache").resolve()) if self.results_dir else None
            self._worker = CellWorker(cache_dir=cache)
        # Each cell runs at its profile's threads (the worker sets them, as on Ray); this
        # process gets its own count back afterwards.
        threads = torch.get_num_threads()
        try:
            for cell in cells:
                on_result(cell, self._run_one(cell))
        finally:
            torch.set_num_threads(threads)
        self.worker_stats = [self._worker.counts()]

    def _run_one(self, cell: Workload) -> CellReport:
        if self.progress:
            self.progress.start_cell(cell)
        on_step = self.progress.step if self.progress else None
        start = time.monotonic()
        try:
            with alarm(cell.timeout_s):
                return self._worker.run(
                    cell,
                    on_step=on_step,
                    submitted_unix=time.time(),
                    live_log=cell_log(self.log_dir, cell.cell_id),
                )
        except CellTimeout:
            return timeout_report(cell, time.monotonic() - start, self._where(), None)

    def _where(self) -> Placement:
        info = self._worker.info() if self._worker else {}
        return Placement(hostname=info.get("hostname"), worker_pid=info.get("pid"))
