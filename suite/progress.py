"""Rich progress for a matrix: one bar with done/ok/failed/running and an ETA.

With the in-process executor a second bar follows the running cell's steps; with Ray,
cells run in other processes, so each cell's steps go to its log file instead
(results/logs/<run_id>/<cell_id>.log, written as the cell runs), and the bar counts cells.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
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

    def __init__(self, total: int, console: Console | None = None, log_dir: Path | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.total = total
        self.log_dir = log_dir
        self.counts = {"ok": 0, "failed": 0}
        self.running: dict[str, str] = {}

    def __enter__(self) -> MatrixProgress:
        self.progress.start()
        self.matrix_task = self.progress.add_task("matrix", total=self.total, info=self._info())
        self.cell_task = self.progress.add_task("cell", total=1, visible=False, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        if self.log_dir is not None and self.total:
            self.console.print(f"per-cell logs under {self.log_dir}/")

    def _info(self) -> str:
        return (
            f"ok {self.counts['ok']}  failed {self.counts['failed']}  running {len(self.running)}"
        )

    def add_cells(self, n: int) -> None:
        """A later phase (a tuned matrix's seed runs) brings `n` more cells."""
        self.total += n
        self.progress.update(self.matrix_task, total=self.total)

    def note(self, text: str) -> None:
        """A line between cells (the driver announces its post-hoc phase)."""
        self.console.print(escape(text), highlight=False)

    def start_cell(self, cell) -> None:
        self.running[cell.cell_id] = cell.title()
        self.progress.update(self.matrix_task, info=self._info())

    def step(self, step: int, total: int, loss: float) -> None:
        """Steps of the running cell (in-process executor only)."""
        title = next(iter(self.running.values()), "cell")
        self.progress.update(
            self.cell_task,
            description=f"  {title}",
            completed=step,
            total=total,
            visible=True,
            info=f"loss {loss:.4f}",
        )

    def finish_cell(self, cell, result) -> None:
        self.running.pop(cell.cell_id, None)
        key = "ok" if result.status == "ok" else "failed"
        self.counts[key] += 1
        self.progress.update(self.cell_task, visible=False)
        self.progress.advance(self.matrix_task)
        self.progress.update(self.matrix_task, info=self._info())
        style = "green" if result.status == "ok" else "red"
        shown = _score_text(cell, result)
        where = f" [{result.hostname}]" if result.hostname else ""
        self.console.print(
            f"[{style}]{result.status:>7}[/] {escape(cell.title() + where + '  ' + shown)}",
            highlight=False,
        )


def _score_text(cell, result) -> str:
    """Test score; a tuning trial's validation score (trials are never scored on test);
    a post-hoc result's own summary."""
    if getattr(result, "summary", None) is not None:
        return result.summary
    if result.status != "ok":
        # A traceback's last line is the exception; its end is what the line has room for.
        lines = [line for line in (result.error or "").splitlines() if line.strip()]
        return lines[-1][-200:] if lines else ""
    metric = cell.task.primary_metric
    if cell.phase == "trial":
        score = result.val_metrics.get(metric)
        trial = f"trial {cell.trial_index}: " if cell.trial_index is not None else "trial: "
        return trial + (f"validation {metric} {score:.4f}" if score is not None else "")
    score = result.test_metrics.get(metric)
    return f"test {metric} {score:.4f}" if score is not None else ""
