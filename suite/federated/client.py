"""One client's local training in one round: the global adapter in, its own out.

A client rebuilds the cell's seeded task model (from the worker's caches), prepares the
method, loads the global adapter, and takes `local_steps` steps on its share of the
training split through the project's training loop, at the method's constant learning
rate with a fresh optimiser (local SGD-style FedAvg: no optimiser state crosses rounds).
Its random stream is seeded by (cell seed, round, client), so a resumed run repeats it.
Tensors the aggregation rule freezes (`frozen`, by name) are not trained and not sent
back; with `dp` set the local steps are DP-SGD (suite/federated/private.py).

A client reports the CPU time its process spent on it (`time.process_time`, which counts
torch's intra-op threads, where a thread clock would miss them) and which process that
was: a process runs one client at a time (a Ray worker one task, the sequential executor
one client after another), so the difference is the client's alone, and the round can
tell a client that ran in its own process from one that ran elsewhere. A Ray worker
started for the client (after the round submitted it) counts from its own start: its
spawn and imports (about 2 CPU seconds here) are the client's cost too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import psutil
import torch

from suite.cells import Cell
from suite.specs.federated import PrivacySpec
from suite.tasks.encoding import split_examples
from suite.train.batches import train_batches
from suite.train.evaluate import task_loss
from suite.train.load import Setup, load, seed_everything
from suite.train.loop import LoopConfig, train
from suite.train.precision import autocast_loss
from suite.train.prepare import Ready, prepare

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ClientTask:
    """Everything a client needs, picklable (a Ray task's argument)."""

    cell: Cell
    client: int
    round: int
    indices: np.ndarray
    global_state: State
    local_steps: int
    frozen: tuple[str, ...] = ()
    dp: PrivacySpec | None = None
    # Torch's intra-op threads in the client's process (a Ray task's default is every core).
    threads: int | None = None
    # The worker's disk cache of tokenised splits (a Ray task's process has none set).
    cache_dir: str | None = None
    # When the round submitted the client (time.time()): a process started after it was
    # started for the client.
    submitted_at: float | None = None


@dataclass
class ClientUpdate:
    client: int
    examples: int
    state: State
    losses: list[float]
    # CPU seconds the client's process spent on it, and that process's id.
    cpu_s: float
    pid: int


# Whether this process has run a client: only its first may count from the process's start.
_RAN_A_CLIENT = False
# psutil dates a process from the boot time, which Linux gives in whole seconds: a worker
# spawned for a client can look up to a second older than the submission (0.14 s here).
# Ray's prestarted workers are older than that by the time a round submits its clients.
_START_SLACK_S = 1.0


def cpu_start(submitted_at: float | None) -> float:
    """Where a client's CPU time starts on this process's clock (`time.process_time`):
    0, the process's start, for the first client of a process started after the client
    was submitted (a Ray worker spawned for it); else now (a reused worker, the round's
    own process, whose earlier CPU belongs to others)."""
    global _RAN_A_CLIENT
    fresh = not _RAN_A_CLIENT and submitted_at is not None
    _RAN_A_CLIENT = True
    if fresh and psutil.Process().create_time() >= submitted_at - _START_SLACK_S:
        return 0.0
    return time.process_time()


def client_seed(cell_seed: int, round_: int, client: int) -> int:
    return int(np.random.SeedSequence([cell_seed, round_, client]).generate_state(1)[0])


def start_model(cell: Cell) -> tuple[Setup, Ready]:
    """The cell's task model, prepared by its method, as every client and the server
    build it (the same seed, so the same initial adapter and head)."""
    setup = load(cell)
    ready = prepare(cell, setup)
    prepared = ready.prepared
    if prepared.adapter_state is None or prepared.load_adapter_state is None:
        raise ValueError(f"method {cell.method.name!r} cannot save and load an adapter state")
    return setup, ready


def train_client(task: ClientTask) -> ClientUpdate:
    cpu0 = cpu_start(task.submitted_at)
    cell = task.cell
    if task.threads:
        torch.set_num_threads(task.threads)
    if task.cache_dir:
        from suite.train import caches

        caches.set_disk_dir(task.cache_dir)
    setup, ready = start_model(cell)
    prepared = ready.prepared
    prepared.load_adapter_state({k: v.to(setup.device) for k, v in task.global_state.items()})
    for name, param in prepared.model.named_parameters():
        if any(part in name for part in task.frozen):
            param.requires_grad_(False)
    seed = client_seed(cell.seed, task.round, task.client)
    seed_everything(seed)
    share = split_examples(setup.encoded["train"], task.indices)
    batches = train_batches(share, cell.budget.batch_size, setup.pad, setup.collate, seed)
    stream = ({k: v.to(setup.device) for k, v in b.items()} for b in batches)
    cfg = LoopConfig(
        steps=task.local_steps,
        lr=cell.method.lr,
        weight_decay=cell.method.weight_decay,
        grad_clip=cell.budget.grad_clip,
        schedule="constant",
    )
    loss = autocast_loss(task_loss(cell.task), setup.device, cell.budget.autocast)
    if task.dp is None:
        losses = train(prepared, stream, loss, cfg).losses
    else:
        from suite.federated.private import private_train

        losses = private_train(prepared, stream, loss, cfg, task.dp, seed)
    state = {k: v.detach().cpu().clone() for k, v in prepared.adapter_state().items()}
    cpu_s = time.process_time() - cpu0
    return ClientUpdate(task.client, len(task.indices), state, losses, cpu_s, os.getpid())
