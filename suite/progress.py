"""Rich progress for a matrix: one bar for the matrix, one for the steps of the running cell."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class MatrixProgress:
    """Context manager; the driver and executors call start_cell / step / finish_cell."""

    def __init__(self, total: int, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.total = total
        self.counts = {"ok": 0, "failed": 0}
        self.running: set[str] = set()

    def __enter__(self) -> MatrixProgress:
        self.progress.start()
        self.matrix_task = self.progress.add_task("matrix", total=self.total, info=self._info())
        self.cell_task = self.progress.add_task("cell", total=1, visible=False, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def _info(self) -> str:
        return (
            f"ok {self.counts['ok']}  failed {self.counts['failed']}  running {len(self.running)}"
        )

    def start_cell(self, cell) -> None:
        self.running.add(cell.cell_id)
        self.progress.update(
            self.cell_task,
            description=f"  {cell.title()}",
            completed=0,
            total=1,
            visible=True,
            info="loading",
        )
        self.progress.update(self.matrix_task, info=self._info())

    def step(self, step: int, total: int, loss: float) -> None:
        self.progress.update(self.cell_task, completed=step, total=total, info=f"loss {loss:.4f}")

    def finish_cell(self, cell, result) -> None:
        self.running.discard(cell.cell_id)
        key = "ok" if result.status == "ok" else "failed"
        self.counts[key] += 1
        self.progress.advance(self.matrix_task)
        self.progress.update(self.matrix_task, info=self._info())
        style = "green" if result.status == "ok" else "red"
        metric = cell.task.primary_metric
        score = result.test_metrics.get(metric)
        shown = f"test {metric} {score:.4f}" if score is not None else (result.error or "")[-200:]
        self.console.print(f"[{style}]{result.status:>7}[/] {cell.title()}  {shown}")
