"""Run one cell in this process: load, adapt, train, evaluate, measure."""

from __future__ import annotations

import os
import platform
import random
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import numpy as np
import torch

from suite.cells import Cell
from suite.methods.api import Method, PrepareContext
from suite.plugins import load_object
from suite.results import CellResult
from suite.scheduler.flops import train_flops
from suite.tasks.forgetting import ReferenceProbe
from suite.train import caches
from suite.train.batches import eval_batches, train_batches
from suite.train.evaluate import evaluate, task_loss
from suite.train.loop import LoopConfig, NonFiniteLoss, total_steps, train
from suite.train.measure import PeakMemory, median_latency, safetensors_bytes

# Latency is measured on this many fixed test batches (enough for a stable median).
LATENCY_BATCHES = 8


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def instantiate(cell: Cell) -> Method:
    cls = load_object(cell.method.implementation, cell.method.impl_dir)
    return cls(cls.Params.model_validate(cell.method.params))


def pick_device(cell: Cell) -> torch.device:
    if cell.profile.expected.type == "cuda" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run_cell(cell: Cell, on_step: Callable[[int, int, float], None] | None = None) -> CellResult:
    """Run a cell; any exception becomes a result row with its status and error text."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    base = {
        "cell_id": cell.cell_id,
        "hostname": platform.node(),
        "worker_pid": os.getpid(),
        "started_at": started,
    }
    try:
        result = _run(cell, on_step, base)
    except NonFiniteLoss as exc:
        result = CellResult(**base, status="nan", error=str(exc))
    except (torch.OutOfMemoryError, MemoryError) as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # so the worker's next cell starts with a clean device
        result = CellResult(**base, status="oom", error=f"{type(exc).__name__}: {exc}"[:2000])
    except Exception as exc:  # noqa: BLE001 - a failing cell must never stop the matrix
        text = "".join(traceback.format_exception(exc))[-4000:]
        result = CellResult(**base, status="failed", error=text)
    result.cell_wall_s = time.perf_counter() - t0
    return result


def _run(cell: Cell, on_step, base: dict) -> CellResult:
    if cell.profile.torch_threads:
        torch.set_num_threads(cell.profile.torch_threads)
    device = pick_device(cell)
    data = caches.task_data(cell.task, cell.task_dir)
    tokenizer = caches.tokenizer(cell.model)
    encoded = caches.encoded(cell.task, cell.task_dir, cell.model)
    regression = cell.task.type == "regression"
    pad = tokenizer.pad_token_id or 0

    # Load (or find cached) the backbone before seeding: loading draws random numbers for
    # weights it then overwrites, so the first cell of a worker would otherwise start
    # from a different random state than the same cell run later on that worker.
    caches.warm(cell.model)
    seed_everything(cell.seed)
    model = caches.task_model(cell.model, data.num_outputs, cell.seed).to(device)
    # Forgetting (causal LMs, when the matrix names reference texts): the base model's loss.
    reference = ReferenceProbe.for_cell(cell, tokenizer, device)
    reference_before = reference.loss(model) if reference else None
    method = instantiate(cell)
    loss_fn = task_loss(cell.task)

    def batches_for_init():
        return _to_device(
            train_batches(encoded["train"], cell.budget.batch_size, pad, regression, cell.seed + 1),
            device,
        )

    ctx = PrepareContext(
        preset=cell.model,
        seed=cell.seed,
        device=device,
        train_batches=batches_for_init,
        loss_fn=loss_fn,
    )
    prepared = method.prepare(model, ctx)
    model = prepared.model.to(device)
    trainable = _trainable(model)
    head = _trainable(model.head)
    total = sum(p.numel() for p in model.parameters())

    steps = total_steps(
        len(encoded["train"]), cell.budget.batch_size, cell.budget.epochs, cell.budget.max_steps
    )
    cfg = LoopConfig(
        steps=steps,
        lr=cell.method.lr,
        weight_decay=cell.method.weight_decay,
        warmup_ratio=cell.budget.warmup_ratio,
        grad_clip=cell.budget.grad_clip,
    )
    stream = _to_device(
        train_batches(encoded["train"], cell.budget.batch_size, pad, regression, cell.seed), device
    )
    tokens = [0]  # padded tokens trained on, for the FLOP estimate
    stream = _counted(stream, tokens)
    memory = PeakMemory(device)
    memory.reset()
    stats = train(
        prepared,
        stream,
        loss_fn,
        cfg,
        on_step=(lambda s, loss: on_step(s + 1, steps, loss)) if on_step else None,
    )
    peak = memory.peak_bytes()
    # Methods that grow during training (IncreLoRA adds rank) end with more trainable
    # parameters than they started with: report the larger of the two counts.
    trainable = max(trainable, _trainable(model))
    head = max(head, _trainable(model.head))

    model.eval()
    eval_sets = {
        s: _to_list(eval_batches(encoded[s], cell.task.eval_batch_size, pad, regression), device)
        for s in ("validation", "test")
    }
    # Text tokenizers decode generated answers; a vision preset's pixel processor has none.
    decode = (
        partial(tokenizer.decode, skip_special_tokens=True)
        if hasattr(tokenizer, "decode")
        else None
    )
    val = evaluate(model, eval_sets["validation"], cell.task, decode)
    # Tuning trials are never scored on test, so test metrics cannot steer selection.
    test = {} if cell.phase == "trial" else evaluate(model, eval_sets["test"], cell.task, decode)
    latency_batches = eval_sets["test"][:LATENCY_BATCHES]
    latency_unmerged = median_latency(lambda b: model(**b), latency_batches, device)
    merged = _measure_merge(prepared, model, latency_batches, device)
    state = prepared.adapter_state() if prepared.adapter_state else {}
    baselines = caches.baselines(cell.task, cell.task_dir)
    return CellResult(
        **base,
        status="ok",
        val_metrics=val,
        test_metrics=test,
        baseline_val=baselines.get("validation", {}),
        baseline_test=baselines.get("test", {}),
        trainable_params=trainable,
        adapter_params=trainable - head,
        total_params=total,
        peak_memory_bytes=peak,
        peak_memory_isolated=memory.isolated,
        train_wall_s=stats.wall_s,
        train_steps=stats.steps,
        samples_per_s=stats.samples_per_s,
        step_time_median_s=stats.step_time_median,
        latency_unmerged_s=latency_unmerged,
        adapter_bytes=safetensors_bytes(state) if state else None,
        final_train_loss=stats.final_loss,
        train_tokens=tokens[0],
        train_flops=train_flops(model, tokens[0]),
        loss_curve=stats.losses,
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        **merged,
        **(reference.fields(reference_before, model) if reference else {}),
    )


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _measure_merge(prepared, model, batches, device) -> dict:
    """Merge time, merged latency, and how far merged outputs drift from unmerged ones."""
    if prepared.merge is None or not batches:
        return {}
    with torch.inference_mode():
        before = model(**batches[0])
    start = time.perf_counter()
    with torch.no_grad():
        prepared.merge()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    merge_time = time.perf_counter() - start
    latency = median_latency(lambda b: model(**b), batches, device)
    with torch.inference_mode():
        diff = float((model(**batches[0]) - before).abs().max())
    if prepared.unmerge is not None:
        prepared.unmerge()
    return {"merge_time_s": merge_time, "latency_merged_s": latency, "merge_max_abs_diff": diff}


def _counted(stream, tokens: list[int]):
    for batch in stream:
        # Image batches have no input_ids (their tokens are patches); count text tokens only.
        tokens[0] += int(batch["input_ids"].numel()) if "input_ids" in batch else 0
        yield batch


def _to_device(stream, device):
    for batch in stream:
        yield {k: v.to(device) for k, v in batch.items()}


def _to_list(batches, device):
    return [{k: v.to(device) for k, v in b.items()} for b in batches]
