"""How a round's client tasks run: in this process one after another, or as Ray tasks.

Both give the same updates in the same (client) order, so the aggregate does not
depend on the executor.
"""

from __future__ import annotations

from typing import Protocol

from suite.federated.client import ClientTask, ClientUpdate, train_client


class ClientExecutor(Protocol):
    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]: ...


class SequentialExecutor:
    """Clients in this process, in order (tests, and a laptop without Ray)."""

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        return [train_client(task) for task in tasks]


class RayExecutor:
    """One Ray task per client (`num_cpus`/`num_gpus` each), on the cluster the caller
    joined with suite.scheduler.cluster.connect (the scheduler's own connection)."""

    def __init__(self, num_cpus: float = 1.0, num_gpus: float = 0.0):
        self.num_cpus, self.num_gpus = num_cpus, num_gpus

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        import ray

        if not ray.is_initialized():
            raise RuntimeError(
                "RayExecutor needs a Ray connection (suite.scheduler.cluster.connect)"
            )
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(train_client)
        return ray.get([remote.remote(task) for task in tasks])
