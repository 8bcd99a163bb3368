"""A federated run: rounds of client training and server aggregation, each stored.

The server builds the cell's model once (the initial global adapter is its prepared
adapter, stored as round 0), partitions the training split, and then, per round, hands
every non-empty client the global adapter, aggregates their adapters weighted by their
example counts, evaluates the aggregate on the validation and test splits, and stores it
with the round's metrics. A run finds its stored rounds by its id (the cell's id and the
federated spec's hash) and resumes after the last one; its numbers do not change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from suite.cells import Cell
from suite.federated.aggregate import State, rule
from suite.federated.client import ClientTask, start_model
from suite.federated.executor import ClientExecutor, SequentialExecutor
from suite.federated.rounds import RoundStore
from suite.federated.spec import FederatedSpec
from suite.federated.split import label_skew, partition
from suite.train.batches import eval_batches
from suite.train.evaluate import evaluate
from suite.train.precision import autocast_context
from suite.train.runner import Ready, Setup


@dataclass
class FederatedResult:
    run_id: str
    rounds: list[dict[str, Any]]  # the round table: one dict per stored round, from 0
    state: State  # the last round's global adapter
    resumed_from: int | None  # the round the run found stored, None for a fresh run


def run_id(cell: Cell, spec: FederatedSpec) -> str:
    return f"{cell.cell_id[:16]}-{spec.digest()}"


def state_bytes(state: State) -> int:
    """Raw tensor bytes (what a client sends or receives, before any serialisation)."""
    return sum(t.numel() * t.element_size() for t in state.values())


def run_federated(
    cell: Cell,
    spec: FederatedSpec,
    root: Path | str,
    executor: ClientExecutor | None = None,
    stop_after: int | None = None,
) -> FederatedResult:
    """Run (or resume) `spec` over `cell`, storing rounds under `root`; `stop_after`
    ends the run after that round (a deliberate interruption, for tests and budgets)."""
    executor = executor or SequentialExecutor()
    setup, ready = start_model(cell)
    labels = setup.encoded["train"].labels
    parts = partition(labels, spec.clients, spec.split, spec.split_seed)
    rid = run_id(cell, spec)
    describe = {"cell_id": cell.cell_id, "spec": spec.model_dump(mode="json")}
    store = RoundStore(root, rid, describe)
    found = store.last_completed()
    if found is None:
        state = {k: v.detach().cpu().clone() for k, v in ready.prepared.adapter_state().items()}
        sizes = [len(p) for p in parts]
        extra = {"client_sizes": sizes, "label_skew": label_skew(labels, parts)}
        store.save(0, state, {**_scores(cell, setup, ready, state), **_traffic(0, 0, 0), **extra})
    last = found or 0
    state = store.state(last)
    aggregate = rule(spec.aggregation)
    end = spec.rounds if stop_after is None else min(spec.rounds, stop_after)
    for k in range(last + 1, end + 1):
        t0 = time.perf_counter()
        tasks = [
            ClientTask(cell, c, k, idx, state, spec.local_steps)
            for c, idx in enumerate(parts)
            if len(idx)
        ]
        updates = executor.run(tasks)
        new = aggregate([u.state for u in updates], [u.examples for u in updates])
        traffic = _traffic(
            len(tasks), state_bytes(state), sum(state_bytes(u.state) for u in updates)
        )
        losses = {str(u.client): u.losses[-1] for u in updates}
        state = new
        metrics = {**_scores(cell, setup, ready, state), **traffic, "client_final_loss": losses}
        store.save(k, state, {**metrics, "round_wall_s": time.perf_counter() - t0})
    return FederatedResult(rid, store.metrics(), store.state(store.last_completed()), found)


def _traffic(clients: int, down_each: int, up_total: int) -> dict[str, int]:
    return {"clients": clients, "bytes_down": clients * down_each, "bytes_up": up_total}


def _scores(cell: Cell, setup: Setup, ready: Ready, state: State) -> dict[str, Any]:
    """The global adapter's metrics on the validation and test splits."""
    model = ready.prepared.model
    ready.prepared.load_adapter_state({k: v.to(setup.device) for k, v in state.items()})
    model.eval()
    out = {}
    for split in ("validation", "test"):
        batches = eval_batches(
            setup.encoded[split], cell.task.eval_batch_size, setup.pad, setup.collate
        )
        batches = [{k: v.to(setup.device) for k, v in b.items()} for b in batches]
        with torch.no_grad(), autocast_context(setup.device, cell.budget.autocast):
            out[f"{split}_metrics"] = evaluate(model, batches, cell.task, setup.tokenizer)
    return out
