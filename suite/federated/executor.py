"""How a round's client tasks run: in this process one after another, or as Ray tasks.

Both give the same updates in the same (client) order, so the aggregate does not
depend on the executor (tests/test_federated_ray.py checks it bitwise on CPU).
"""

from __future__ import annotations

import sys
from typing import Protocol

from suite.federated.client import ClientTask, ClientUpdate, train_client


class ClientExecutor(Protocol):
    name: str  # stored with each round (federated_rounds.client_executor)

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]: ...


class SequentialExecutor:
    """Clients in this process, in order (tests, and a laptop without Ray)."""

    name = "sequential"

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        return [train_client(task) for task in tasks]


class RayExecutor:
    """One Ray task per client on the cluster this process joined (a round runs on a
    Ray worker of `peftbench run`, or the caller connected with
    suite.scheduler.cluster.connect). By default a client task reserves no CPU of its
    own: the round that submits it holds its profile's resources and waits for it, so a
    reservation would count those cores twice (and, on a one-node cluster the round's
    worker fills, never be granted)."""

    name = "ray"

    def __init__(self, num_cpus: float = 0.0, num_gpus: float = 0.0):
        self.num_cpus, self.num_gpus = num_cpus, num_gpus

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        import ray

        if not ray.is_initialized():
            raise RuntimeError(
                "RayExecutor needs a Ray connection (suite.scheduler.cluster.connect)"
            )
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus)(train_client)
        return ray.get([remote.remote(task) for task in tasks])


def default_executor() -> ClientExecutor:
    """Ray tasks where this process runs in (or joined) Ray, else this process."""
    ray = sys.modules.get("ray")  # never imported: certainly not connected
    if ray is not None and ray.is_initialized():
        return RayExecutor()
    return SequentialExecutor()
