"""The Ray executor: a pool of Ray actors per hardware profile, one cell at a time each.

Actors (not tasks) because a worker keeps its loaded models and tokenised datasets
across cells. Each actor asks Ray for its profile's resources, so Ray places it on a
node that has them. The driver loop hands a cell to an idle, started actor, waits for
results, and stands in for cells that cannot answer: a cell past its timeout has its
actor killed and gets a `timeout` row; a cell whose worker process (or node) died is
retried on a fresh actor up to `max_retries` times, then gets a `crashed` row. Every
cell gets exactly one row per run: results of killed actors are never read.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suite.cells import Workload
from suite.paths import cell_log
from suite.results import CellReport, Placement
from suite.scheduler import cluster, resources
from suite.scheduler.faults import crashed_report, failed_report, timeout_report
from suite.specs.profile import HardwareProfile

# Consecutive worker start failures (beyond one per slot) before the run gives up.
MAX_FAILED_STARTS = 3


@dataclass
class _Slot:
    """One actor of the pool, and the cell it is running (if any)."""

    profile: HardwareProfile
    actor: Any
    ready_ref: Any
    info: dict[str, Any] | None = None
    cell: Workload | None = None
    ref: Any = None
    started: float = 0.0
    started_at: str = ""


@dataclass
class RayExecutor:
    """Runs cells on Ray actors; see the module docstring for the fault rules."""

    address: str | None = None
    results_dir: Path = Path("results")
    workers: int | None = None
    max_retries: int = 2
    progress: Any = None
    log_dir: Path | None = None
    poll_s: float = 0.2
    worker_stats: list[dict[str, Any]] = field(default_factory=list)
    _owned: bool = False
    _slots: list[_Slot] = field(default_factory=list)
    _attempts: dict[str, int] = field(default_factory=dict)
    _actor_cls: Any = None
    _failed_starts: int = 0
    # Results collected but not yet handed to on_result (see __call__).
    _pending: list[tuple[Workload, CellReport]] = field(default_factory=list)

    # -- set-up ------------------------------------------------------------------------
    def prepare(self, cells: list[Workload]) -> None:
        """Connect to Ray and check every profile fits some node, before any cell runs.

        Idempotent: a caller may prepare (and wait for the pool) before run_plan does.
        """
        if not cells or self._slots:
            return
        self._owned = cluster.connect(self.address, self.results_dir)
        nodes = resources.cluster_nodes()
        profiles = {c.profile.name: c.profile for c in cells}
        resources.check_feasible(profiles.values(), nodes)
        for name, profile in profiles.items():
            n_cells = sum(1 for c in cells if c.profile.name == name)
            size = min(n_cells, max(resources.slots(profile, nodes), 1))
            if self.workers:
                size = min(size, self.workers)
            self._slots += [self._spawn(profile) for _ in range(size)]

    def _spawn(self, profile: HardwareProfile) -> _Slot:
        if self._actor_cls is None:
            self._actor_cls = _actor_class()
        actor_cls = self._actor_cls
        actor = actor_cls.options(**resources.ray_options(profile)).remote(
            str((self.results_dir / "cache").resolve())
        )
        return _Slot(profile, actor, actor.info.remote())

    def wait_until_started(self, timeout_s: float) -> None:
        """Block until every worker of the pool is up (tests, benchmarks)."""
        import ray

        ray.get([slot.ready_ref for slot in self._slots], timeout=timeout_s)

    @property
    def pool_size(self) -> int:
        return len(self._slots)

    def busy_nodes(self) -> set[str]:
        """The node ids of the workers running a cell right now."""
        return {s.info["node_id"] for s in self._slots if s.cell is not None and s.info}

    # -- the loop ----------------------------------------------------------------------
    def __call__(
        self, cells: list[Workload], on_result: Callable[[Workload, CellReport], None]
    ) -> None:
        if not cells:
            return
        if not self._slots:
            self.prepare(cells)
        queue = deque(cells)
        while queue or any(s.cell for s in self._slots):
            self._dispatch(queue)
            self._collect(queue, on_result)
            # A worker whose cell just finished gets its next cell before the driver
            # stores the result, so the store's write overlaps the next cell's run.
            self._dispatch(queue)
            self._deliver(on_result)
            self._expire(on_result)
        self._gather_stats()

    def _deliver(self, on_result) -> None:
        pending, self._pending = self._pending, []
        for cell, result in pending:
            on_result(cell, result)

    def _dispatch(self, queue: deque[Workload]) -> None:
        for slot in self._slots:
            if slot.info is None or slot.cell is not None:
                continue
            cell = next((c for c in queue if c.profile.name == slot.profile.name), None)
            if cell is None:
                continue
            queue.remove(cell)
            slot.cell, slot.started = cell, time.monotonic()
            slot.started_at = datetime.now(UTC).isoformat(timespec="seconds")
            slot.ref = slot.actor.run.remote(
                cell, submitted_unix=time.time(), live_log=cell_log(self.log_dir, cell.cell_id)
            )
            if self.progress:
                self.progress.start_cell(cell)

    def _collect(self, queue: deque[Workload], on_result) -> None:
        import ray

        waiting = {s.ready_ref: s for s in self._slots if s.info is None}
        waiting |= {s.ref: s for s in self._slots if s.cell is not None}
        if not waiting:
            time.sleep(self.poll_s)
            return
        done, _ = ray.wait(list(waiting), num_returns=1, timeout=self.poll_s)
        if done:
            done, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
        for ref in done:
            slot = waiting[ref]
            if ref is slot.ready_ref and slot.info is None:
                self._started(slot)
            else:
                self._finished(slot, queue, on_result)

    def _started(self, slot: _Slot) -> None:
        import ray

        try:
            slot.info = ray.get(slot.ready_ref)
            self._failed_starts = 0
        except ray.exceptions.RayError as exc:
            # Died before it started (its node went away): try again, but not forever;
            # a worker that cannot even start (e.g. peftbench missing on a node) never will.
            self._failed_starts += 1
            if self._failed_starts > MAX_FAILED_STARTS + len(self._slots):
                raise resources.SchedulingError(
                    f"Ray workers keep failing to start; last error: {exc}"[:3000]
                ) from exc
            self._replace(slot)

    def _finished(self, slot: _Slot, queue: deque[Workload], on_result) -> None:
        import ray

        cell = slot.cell
        assert cell is not None
        attempts = self._attempts.get(cell.cell_id, 1)
        try:
            report = ray.get(slot.ref).model_copy(update={"attempts": attempts})
        except ray.exceptions.RayTaskError as exc:  # the worker code itself raised
            report = failed_report(str(exc), attempts)
        except ray.exceptions.RayError as exc:  # the process or its node died
            self._replace(slot)
            if attempts <= self.max_retries:
                self._attempts[cell.cell_id] = attempts + 1
                queue.appendleft(cell)
                return
            where, started = self._where(slot)
            on_result(
                cell, crashed_report(f"{type(exc).__name__}: {exc}", attempts, where, started)
            )
            return
        slot.cell = slot.ref = None
        self._pending.append((cell, report))

    def _expire(self, on_result) -> None:
        import ray

        now = time.monotonic()
        for slot in list(self._slots):
            cell = slot.cell
            if cell is None or not cell.timeout_s or now - slot.started <= cell.timeout_s:
                continue
            ray.kill(slot.actor, no_restart=True)
            where, started = self._where(slot)
            attempts = self._attempts.get(cell.cell_id, 1)
            report = timeout_report(cell, now - slot.started, where, started, attempts)
            self._replace(slot)
            on_result(cell, report)

    def _where(self, slot: _Slot) -> tuple[Placement, str | None]:
        """Where the slot's cell ran, and when it started (for cells that cannot answer)."""
        info = slot.info or {}
        where = Placement(
            node_id=info.get("node_id"), hostname=info.get("hostname"), worker_pid=info.get("pid")
        )
        return where, slot.started_at or None

    def _replace(self, slot: _Slot) -> None:
        """Swap a dead or killed actor for a fresh one with the same profile."""
        index = self._slots.index(slot)
        self._slots[index] = self._spawn(slot.profile)

    # -- tear-down ---------------------------------------------------------------------
    def _gather_stats(self) -> None:
        import ray

        live = [s for s in self._slots if s.info is not None]
        refs = [s.actor.counts.remote() for s in live]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=30)
        self.worker_stats = [ray.get(r) for r in ready]

    def close(self) -> None:
        """Kill every actor and leave Ray (shutting it down if it is embedded)."""
        if self._slots:
            import ray

            for slot in self._slots:
                ray.kill(slot.actor, no_restart=True)
        self._slots = []
        cluster.disconnect(self._owned)
        self._owned = False


def _actor_class():
    """The Ray actor class, made only when Ray is needed (Ray stays out of CLI start-up)."""
    import ray

    from suite.scheduler.worker import CellWorker

    return ray.remote(max_restarts=0, max_task_retries=0)(CellWorker)
