"""Hardware profile -> Ray resource request, and whether any node can ever satisfy it.

The feasibility check runs before any cell starts, so a matrix asking for an H100 on a
laptop fails at once with a message rather than hanging with pending actors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from suite.specs.profile import HardwareProfile

GB = 1e9


class SchedulingError(RuntimeError):
    """Some cells ask for resources no node of the cluster has."""


def ray_options(profile: HardwareProfile) -> dict[str, Any]:
    """Options for `ActorClass.options(...)` from a profile's requested resources."""
    res = profile.resources
    opts: dict[str, Any] = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}
    if res.memory_gb:
        opts["memory"] = int(res.memory_gb * GB)
    if res.accelerator_type:
        opts["accelerator_type"] = res.accelerator_type
    return opts


def _demand(profile: HardwareProfile) -> dict[str, float]:
    """The same request as Ray's resource names, for comparing with node totals."""
    res = profile.resources
    demand = {"CPU": res.num_cpus}
    if res.num_gpus:
        demand["GPU"] = res.num_gpus
    if res.memory_gb:
        demand["memory"] = res.memory_gb * GB
    if res.accelerator_type:
        demand[f"accelerator_type:{res.accelerator_type}"] = 0.001
    return demand


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    address: str
    resources: dict[str, float]


def fits(profile: HardwareProfile, node: NodeInfo) -> bool:
    return all(node.resources.get(k, 0.0) >= v for k, v in _demand(profile).items())


def slots(profile: HardwareProfile, nodes: Iterable[NodeInfo]) -> int:
    """How many cells of this profile the cluster can run at once."""
    total = 0
    for node in nodes:
        per_node = [
            int(node.resources.get(k, 0.0) // v)
            for k, v in _demand(profile).items()
            if not k.startswith("accelerator_type:")
        ]
        total += min(per_node) if fits(profile, node) else 0
    return total


def check_feasible(profiles: Iterable[HardwareProfile], nodes: list[NodeInfo]) -> None:
    """Raise SchedulingError naming each profile that no node can ever run."""
    problems = []
    for profile in profiles:
        if not any(fits(profile, n) for n in nodes):
            want = ", ".join(f"{k}={v:g}" for k, v in _demand(profile).items())
            have = "; ".join(
                f"{n.address}: "
                + ", ".join(
                    f"{k}={v:g}"
                    for k, v in sorted(n.resources.items())
                    if not k.startswith("node:")
                )
                for n in nodes
            )
            problems.append(
                f"hardware profile '{profile.name}' asks for {want}, "
                f"but no node has that (nodes: {have or 'none'})"
            )
    if problems:
        raise SchedulingError("\n".join(problems))


def cluster_nodes() -> list[NodeInfo]:
    """The alive nodes of the connected Ray cluster with their total resources."""
    import ray

    return [
        NodeInfo(n["NodeID"], n.get("NodeManagerAddress", "?"), dict(n.get("Resources", {})))
        for n in ray.nodes()
        if n.get("Alive")
    ]
