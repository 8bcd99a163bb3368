"""Run one round of a federated run in this process (a worker's unit of work).

The round builds the cell's seeded model once as the server's (the initial global
adapter is its prepared adapter) and partitions the training split. Round 0 stores and
scores that initial adapter. Round k loads the global adapter round k - 1 stored, hands
it to every non-empty client (suite/federated/executor.py: Ray tasks when this process
runs in Ray), combines their adapters with the run's rule weighted by their example
counts, stores the result as round k's global adapter and scores it on the validation
and test splits. Everything a round draws is seeded by (cell seed, round, client), so a
round run again, or after a resume, gives the same numbers. The round records the CPU
time it used, its clients' and its own (`round_cpu`), beside its wall time.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from suite.federated.aggregate import State, rule
from suite.federated.cells import FederatedRound
from suite.federated.client import ClientTask, ClientUpdate, start_model
from suite.federated.executor import ClientExecutor, default_executor
from suite.federated.split import label_skew, partition
from suite.track_results import FederatedMeasured, FederatedMeasurements
from suite.train.batches import eval_batches
from suite.train.caches import baselines
from suite.train.evaluate import evaluate
from suite.train.load import Setup
from suite.train.loop import NonFiniteLoss
from suite.train.precision import autocast_context
from suite.train.prepare import Ready


def state_bytes(state: State) -> int:
    """Raw tensor bytes (what a client sends or receives, before any serialisation)."""
    return sum(t.numel() * t.element_size() for t in state.values())


def run_round(
    rc: FederatedRound, on_step=None, executor: ClientExecutor | None = None
) -> FederatedMeasured:
    """Run a round; any exception becomes its outcome (status and error text)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        outcome: dict[str, Any] = {"status": "ok", "measurements": _round(rc, executor)}
    except NonFiniteLoss as exc:
        outcome = {"status": "nan", "error": str(exc)}
    except (torch.OutOfMemoryError, MemoryError) as exc:
        outcome = {"status": "oom", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    except Exception as exc:  # noqa: BLE001 - a failing round must never stop the matrix
        outcome = {"status": "failed", "error": "".join(traceback.format_exception(exc))[-4000:]}
    return FederatedMeasured(**outcome, started_at=started, cell_wall_s=time.perf_counter() - t0)


def _round(rc: FederatedRound, executor: ClientExecutor | None) -> FederatedMeasurements:
    from suite.methods.source import source_hash
    from suite.train.prepare import method_class

    cpu0 = time.process_time()
    cell, spec, k = rc.cell, rc.spec, rc.round
    setup, ready = start_model(cell)
    labels = setup.encoded["train"].labels
    parts = partition(labels, spec.clients, spec.split, spec.split_seed)
    fields: dict[str, Any] = {"clients": 0, "bytes_down": 0, "bytes_up": 0}
    updates: list[ClientUpdate] = []
    if k == 0:
        state = {n: v.detach().cpu().clone() for n, v in ready.prepared.adapter_state().items()}
        fields |= {"client_sizes": [len(p) for p in parts], "label_skew": label_skew(labels, parts)}
    else:
        prior = load_file(str(rc.state_path(k - 1)))
        state, traffic, updates = _train_round(rc, prior, parts, executor)
        fields |= traffic
    path = rc.state_path(k)
    sha = save_state(path, state)
    scores = _scores(cell, setup, ready, state)
    fields |= round_cpu(time.process_time() - cpu0, updates)
    metric = cell.task.primary_metric
    trivial = baselines(cell.task, cell.task_dir).get("test", {})
    return FederatedMeasurements(
        fed_run=rc.fed_run, round=k, metric=metric,
        validation_score=scores["validation"].get(metric), test_score=scores["test"].get(metric),
        baseline_test_score=trivial.get(metric),
        validation_metrics=scores["validation"], test_metrics=scores["test"],
        state_path=str(path), state_sha256=sha,
        adapter_params=sum(t.numel() for t in state.values()),
        method_source_hash=source_hash(method_class(cell)), device=str(setup.device), **fields,
    )  # fmt: skip


def round_cpu(process_cpu_s: float, updates: list[ClientUpdate]) -> dict[str, float]:
    """The round's CPU seconds: its clients' together, and its own process's
    (`process_cpu_s`) less those of the clients that ran in this process (the sequential
    executor's), which it already counts."""
    here = sum(u.cpu_s for u in updates if u.pid == os.getpid())
    return {
        "clients_cpu_s": sum(u.cpu_s for u in updates),
        "server_cpu_s": process_cpu_s - here,
    }


def _train_round(
    rc: FederatedRound, state: State, parts, executor
) -> tuple[State, dict, list[ClientUpdate]]:
    """Round k's client training and aggregation: the new global adapter, its traffic,
    the clients' updates."""
    from suite.train.caches import disk_dir

    spec, agg = rc.spec, rule(rc.spec.aggregation)
    threads = rc.cell.profile.threads()
    cache = str(disk_dir()) if disk_dir() else None
    task = partial(
        ClientTask, cell=rc.cell, round=rc.round, global_state=state,
        local_steps=spec.local_steps, frozen=agg.frozen, dp=spec.dp, threads=threads,
        cache_dir=cache, submitted_at=time.time(),
    )  # fmt: skip
    tasks = [task(client=c, indices=idx) for c, idx in enumerate(parts) if len(idx)]
    t0 = time.perf_counter()
    executor = executor or default_executor()
    updates = executor.run(tasks)
    wall = time.perf_counter() - t0
    new = agg.aggregate(state, [u.state for u in updates], [u.examples for u in updates], rc.round)
    traffic = {
        "clients": len(tasks),
        "bytes_down": len(tasks) * state_bytes(state),
        "bytes_up": sum(state_bytes(u.state) for u in updates),
        "client_final_losses": [u.losses[-1] for u in updates],
        "clients_wall_s": wall,
        "client_executor": executor.name,
    }
    return new, traffic, updates


def save_state(path: Path, state: State) -> str:
    """Write a global adapter (renamed into place) and return its file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    save_file({n: t.detach().cpu().contiguous() for n, t in sorted(state.items())}, str(tmp))
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scores(cell, setup: Setup, ready: Ready, state: State) -> dict[str, dict[str, float]]:
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
            out[split] = evaluate(model, batches, cell.task, setup.tokenizer)
    return out
