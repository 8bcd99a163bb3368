"""Running cells in one worker process; both executors use this, so rows look the same.

A worker records its actual hardware profile once per (device, dtype), keeps models and
tokenised datasets in its caches across cells, and adds to each result what only the
worker knows: where it ran, the profile it ran on, achieved FLOP/s as a fraction of the
calibrated matmul peak, whether the device matches the declared one, and its log.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from suite.cell_kinds import cell_kind
from suite.cells import Workload
from suite.results import CellReport, Placement


class CellWorker:
    """One process's cell runner. Heavy imports happen here, not at module import."""

    def __init__(self, cache_dir: str | None = None, threads: int | None = None):
        """`threads` overrides every cell's profile (`HardwareProfile.threads`), for the
        benchmarks that sweep it; the executors leave it unset."""
        from suite.train import caches

        if cache_dir:
            caches.set_disk_dir(cache_dir)
        self.threads = threads
        self.profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self.node_id = _ray_node_id()

    def info(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "hostname": platform.node(), "pid": os.getpid()}

    def counts(self) -> dict[str, Any]:
        from suite.train import caches

        return {**self.info(), **caches.COUNTS}

    def profile_for(self, cell: Workload) -> dict[str, Any]:
        """This worker's recorded profile for the cell's device and compute dtype (recorded
        once)."""
        from suite.scheduler import hardware
        from suite.train.precision import compute_dtype

        device = cell.profile.device()
        # An autocast cell's matmuls run in the autocast dtype: calibrated in that one (a
        # post-hoc cell may have no budget).
        dtype = compute_dtype(cell.model.dtype, getattr(cell.budget, "autocast", None))
        key = (str(device), dtype)
        if key not in self.profiles:
            self.profiles[key] = hardware.record(device, dtype, self.node_id)
        return self.profiles[key]

    def run(
        self,
        cell: Workload,
        on_step=None,
        submitted_unix: float | None = None,
        live_log: Path | None = None,
    ) -> CellReport:
        """Run a cell; never raises for the cell's own errors (the runner catches them).

        `submitted_unix` (epoch seconds) is when the executor handed the cell over: the
        time to here is Ray's dispatch; what this method spends outside the runner (the
        first cell's hardware calibration among it) is the worker's phase. `live_log`:
        the file the driver will keep the cell's log in; written line by line as the cell
        runs (`tail -f` follows a long cell) when its folder exists on this machine."""
        entered, started = time.time(), time.perf_counter()
        import torch

        torch.set_num_threads(self.threads or cell.profile.threads())
        placement = self.placement(cell)
        log = _Log(live_log)
        log.append(f"{cell.title()} on {platform.node()} pid {os.getpid()}")

        def step(i: int, total: int, loss: float) -> None:
            log.append(f"step {i}/{total} loss {loss:.6f}")
            if on_step:
                on_step(i, total, loss)

        try:
            measured = cell_kind(cell).run(cell, step)
            log.append(f"status {measured.status} after {time.perf_counter() - started:.2f} s")
            if measured.error:
                log.append(measured.error)
        finally:
            log.close()
        report = CellReport(
            measured=measured, placement=placement, log=log.text(), live_log=log.written
        )
        report.dispatch_s = max(entered - submitted_unix, 0.0) if submitted_unix else 0.0
        report.worker_s = max(time.perf_counter() - started - (measured.cell_wall_s or 0.0), 0.0)
        report.finished_unix = time.time()
        return report

    def placement(self, cell: Workload) -> Placement:
        """Where this worker runs the cell, on the hardware profile it recorded."""

        profile = self.profile_for(cell)
        mismatch = cell.profile.mismatch(profile)
        return Placement(
            hostname=platform.node(),
            node_id=self.node_id,
            worker_pid=os.getpid(),
            hardware_profile_id=profile["profile_id"],
            hardware_profile=profile,
            device_mismatch=mismatch is not None,
            device_mismatch_detail=mismatch,
            gpu_fraction=cell.profile.resources.num_gpus or None,
        )


class _Log:
    """A cell's log lines, also appended to `path` as they come when its folder exists
    here (on another node of a cluster it does not: the driver writes the log there)."""

    def __init__(self, path: Path | None):
        self.lines: list[str] = []
        live = path is not None and path.parent.is_dir()
        self.written = str(path) if live else None
        self._file = open(path, "a", buffering=1) if live else None  # noqa: SIM115

    def append(self, line: str) -> None:
        self.lines.append(line)
        if self._file is not None:
            self._file.write(line + "\n")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _ray_node_id() -> str | None:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray there is simply no node id
        pass
    return None
