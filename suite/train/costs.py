"""The measure phase: a trained cell's inference costs (latency unmerged and merged,
merge time and drift, adapter bytes) and, where the matrix names reference texts, what
training cost the base model's loss on them (forgetting).

Latency is the median seconds per batch over the test split's first LATENCY_BATCHES
batches (of the task's eval_batch_size, padded to each batch's longest row), as before;
what changed is what it costs. Unmerged, those forwards are the ones evaluation already
ran (timed by `ForwardTimer`; the model was warm from validation), so they cost nothing;
merged, the forward that measures the merge's drift is also the warm-up, and the batches
run once more. A mergeable cell so runs LATENCY_BATCHES + 1 extra forwards instead of
2 x (LATENCY_BATCHES + 1) + 2, and one that cannot merge none instead of
LATENCY_BATCHES + 1. Where evaluation does not call the model's forward (generation,
perplexity), the unmerged latency is measured as before (a warm-up, then the batches).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from suite.train.measure import (
    LATENCY_BATCHES,
    ForwardTimer,
    median_latency,
    safetensors_bytes,
)
from suite.train.precision import autocast_context


def measure(
    cell, setup, ready, eval_sets: dict, timer: ForwardTimer | None = None
) -> dict[str, Any]:
    """Inference latency unmerged and merged, merge time and error, adapter bytes (under the
    budget's autocast, as evaluation ran), then the forgetting probe's fields."""
    with autocast_context(setup.device, cell.budget.autocast):
        costs = _measure(setup.device, ready.prepared, eval_sets, timer)
    return {**costs, **_forgetting(setup, ready.prepared.model)}


def _forgetting(setup, model) -> dict[str, Any]:
    """The reference texts' loss after training beside the base's (read at load); last,
    on the model as the merge left it, where the runner has always read it."""
    if setup.reference is None:
        return {}
    return setup.reference.fields(setup.reference_before, model)


def _measure(device, prepared, eval_sets: dict, timer: ForwardTimer | None) -> dict[str, Any]:
    model = prepared.model
    batches = eval_sets["test"][:LATENCY_BATCHES]
    unmerged = timer.median(len(batches)) if timer is not None else None
    if unmerged is None:
        unmerged = median_latency(lambda b: model(**b), batches, device)
    before = timer.first_output if timer is not None else None
    state = prepared.adapter_state() if prepared.adapter_state else {}
    return {
        "latency_unmerged_s": unmerged,
        **_measure_merge(prepared, model, batches, device, before),
        "adapter_bytes": safetensors_bytes(state) if state else None,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }


def _measure_merge(prepared, model, batches, device, before=None) -> dict:
    """Merge time, merged latency, and how far merged outputs drift from unmerged ones
    (`before`: the unmerged output of the first batch, when evaluation kept it)."""
    if prepared.merge is None or not batches:
        return {}
    if before is None:
        with torch.inference_mode():
            before = model(**batches[0])
    start = time.perf_counter()
    with torch.no_grad():
        prepared.merge()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    merge_time = time.perf_counter() - start
    with torch.inference_mode():  # also the merged model's warm-up
        diff = float((model(**batches[0]) - before).abs().max())
    latency = median_latency(lambda b: model(**b), batches, device, warmup=False)
    if prepared.unmerge is not None:
        prepared.unmerge()
    return {"merge_time_s": merge_time, "latency_merged_s": latency, "merge_max_abs_diff": diff}
