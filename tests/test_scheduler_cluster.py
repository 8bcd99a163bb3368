"""A real two-node Ray cluster on this machine: cells spread over both nodes, and a node
removed mid-run has its cells rescheduled on the other with nothing lost or repeated."""

from __future__ import annotations

from pathlib import Path

import pytest

from suite.driver import plan, run_plan
from suite.registry import Catalog
from suite.store.store import Store
from tests.scheduler_helpers import rows, write_matrix


@pytest.fixture
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    fast_failure = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": fast_failure},
    )
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


class _RemoveWorkerNode:
    """Progress hooks that remove the worker node once it has finished a cell, when a cell
    finishes on the head node while the worker node's actor is busy with another one (so
    that cell must move)."""

    def __init__(self, cluster, worker):
        self.cluster, self.worker, self.removed = cluster, worker, False
        self.head_id = cluster.head_node.node_id
        self.executor = None
        self.worker_finished = False

    def start_cell(self, cell) -> None:
        pass

    def finish_cell(self, cell, result) -> None:
        busy_on_worker = self.worker.node_id in self.executor.busy_nodes()
        self.worker_finished |= result.node_id == self.worker.node_id
        ready = self.worker_finished and not self.removed and busy_on_worker
        if ready and result.node_id == self.head_id:
            self.cluster.remove_node(self.worker)
            self.removed = True


@pytest.mark.slow
def test_matrix_spreads_over_two_nodes_and_survives_losing_one(
    two_nodes, tiny_plugins: Path, tmp_path: Path
):
    from suite.scheduler.ray_executor import RayExecutor

    cluster, worker = two_nodes
    matrix = write_matrix(tmp_path, "spread", ["head", "lora", "bitfit"], seeds=[0, 1, 2, 3])
    store = Store(tmp_path / "results" / "r.duckdb")
    the_plan = plan(Catalog.discover([tiny_plugins]), str(matrix), store)
    hooks = _RemoveWorkerNode(cluster, worker)
    executor = RayExecutor(results_dir=store.path.parent, progress=hooks, max_retries=2)
    hooks.executor = executor
    # Start the pool first and wait until both actors are up (on a loaded machine one node's
    # actor could otherwise start after the other node had run every cell).
    executor.prepare(the_plan.todo)
    assert executor.pool_size == 2  # one worker per node (one CPU each)
    executor.wait_until_started(timeout_s=300)
    summary = run_plan(the_plan, store, executor, hooks)

    assert hooks.removed
    assert summary.all_ok and len(summary.results) == 12
    got = rows(store.path, "select cell_id, status, node_id, attempts from cell_runs")
    assert len(got) == 12 and len({r[0] for r in got}) == 12  # nothing lost, no duplicates
    assert all(r[1] == "ok" for r in got)
    nodes = {r[2] for r in got}
    assert nodes == {cluster.head_node.node_id, worker.node_id}  # both nodes ran cells
    assert any(r[3] == 2 for r in got)  # the cell in flight on the lost node ran again
