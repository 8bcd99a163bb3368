"""Run one post-hoc cell in this process: load its inputs, merge, generate or compress,
evaluate.

Scores: a merge is evaluated on every source task (each with its own head, the merged
backbone shared, with a fusion's layers in place), a generation on every source task
with the update made for it, each beside that task's own adapter re-evaluated from its
artifact; a
compression on its source task beside the dense model it started from. Both are stored
per task, split and metric (normalised = result / source). Costs: the stage's own time,
what must be stored, the compressed model's latency against the dense one's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import torch

from suite.artifacts import ArtifactError
from suite.methods.source import source_hash
from suite.plugins import load_object
from suite.posthoc.api import CompressContext, MergeContext, TaskUpdate
from suite.posthoc.cells import PosthocCell
from suite.posthoc.inputs import LoadedInput, build_model, load_input
from suite.posthoc.sources import install, source_data
from suite.track_results import PosthocMeasured, PosthocMeasurements, PosthocScore
from suite.train.batches import eval_batches
from suite.train.evaluate import evaluate_cell
from suite.train.failure import failure
from suite.train.load import seed_everything
from suite.train.measure import LATENCY_BATCHES, median_latency, safetensors_bytes


def method_class(cell: PosthocCell):
    return load_object(cell.method.implementation, cell.method.impl_dir)


def run_posthoc(cell: PosthocCell) -> PosthocMeasured:
    """Run a post-hoc cell; any exception becomes its outcome (status and error text)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        outcome = {"status": "ok", "measurements": _run(cell)}
    except ArtifactError as exc:
        outcome = {"status": "input_invalid", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a failing cell must never stop the matrix
        outcome = failure(exc)
    return PosthocMeasured(**outcome, started_at=started, cell_wall_s=time.perf_counter() - t0)


def _run(cell: PosthocCell) -> PosthocMeasurements:
    if not cell.artifacts or len(cell.artifacts) != len(cell.inputs):
        raise ArtifactError("the cell was handed no input artifacts (the driver fills them)")
    cls = method_class(cell)
    method = cls(cls.Params.model_validate(cell.method.params))
    inputs = [load_input(c, a) for c, a in zip(cell.inputs, cell.artifacts, strict=True)]
    seed_everything(cell.seed)
    measured = STAGE_RUNS[cell.method.stage](cell, method, inputs)
    device = inputs[0].setup.device
    return measured.model_copy(
        update={
            "method_source_hash": source_hash(cls),
            "input_sha256": [i.sha256 for i in inputs],
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        }
    )


def latency_batches_of(source: LoadedInput) -> list[dict]:
    """The source task's fixed test batches, on its device (for latency)."""
    setup, task = source.setup, source.cell.task
    batches = eval_batches(setup.encoded["test"], task.eval_batch_size, setup.pad, setup.collate)
    return [{k: v.to(setup.device) for k, v in b.items()} for b in batches]


def score_rows(source: LoadedInput, scores: dict) -> list[PosthocScore]:
    """The result's metrics on `source`'s task beside the source's own."""
    task = source.cell.task
    rows = []
    for split, key, own in (
        ("validation", "val_metrics", source.val_metrics),
        ("test", "test_metrics", source.test_metrics),
    ):
        for metric, value in scores[key].items():
            rows.append(
                PosthocScore(
                    task=task.name, split=split, metric=metric, value=value,
                    source_value=own.get(metric),
                    higher_is_better=task.metric(metric).higher_is_better,
                    primary=metric == task.primary_metric,
                )
            )  # fmt: skip
    return rows


def _check_requirements(cell: PosthocCell, inputs: list[LoadedInput]) -> None:
    need = cell.method.requires
    for inp in inputs:
        if need == "low-rank" and (not inp.factors or set(inp.factors) != set(inp.deltas)):
            raise ValueError(
                f"{cell.method.name} merges low-rank adapters; {inp.cell.method.name} on "
                f"{inp.cell.task.name} did not train one (no (B, A) factors on every layer)"
            )
        if need == "sparse":
            nonzero = sum(int((d != 0).sum()) for d in inp.deltas.values())
            total = sum(d.numel() for d in inp.deltas.values())
            if total and nonzero > 0.5 * total:
                raise ValueError(
                    f"{cell.method.name} composes sparse updates; {inp.cell.method.name} on "
                    f"{inp.cell.task.name} changed {nonzero / total:.0%} of its weights"
                )


def _combine(cell: PosthocCell, inputs: list[LoadedInput], produce) -> PosthocMeasurements:
    """Run `produce(updates, ctx)` (a merge or a generation) and score what it made for
    each source task on that task, beside the task's own adapter."""
    _check_requirements(cell, inputs)
    updates = [TaskUpdate(i.cell.task.name, i.deltas, i.factors) for i in inputs]
    start = time.perf_counter()
    merged = produce(updates, MergeContext(seed=cell.seed, data=source_data(cell, inputs)))
    stage_time = time.perf_counter() - start
    scores: list[PosthocScore] = []
    for index, source in enumerate(inputs):
        model = install(build_model(source, merged.update_for(index)), merged.layers or {})
        result = evaluate_cell(source.cell, source.setup, model.eval())
        scores += score_rows(source, result)
        del model
    return PosthocMeasurements(
        scores=scores,
        stage_time_s=stage_time,
        stored_bytes=safetensors_bytes(merged.stored) if merged.stored else 0,
        stored_params=sum(t.numel() for t in merged.stored.values()),
        heads_bytes=sum(safetensors_bytes(i.head) for i in inputs),
        train_steps=merged.train_steps,
        train_wall_s=merged.train_wall_s,
        notes=merged.notes,
    )


def _compress(cell: PosthocCell, method, inputs: list[LoadedInput]) -> PosthocMeasurements:
    from suite.posthoc.compression import compress_context, storage

    source = inputs[0]
    model = build_model(source, source.deltas)
    latency_batches = latency_batches_of(source)[:LATENCY_BATCHES]
    dense_latency = median_latency(lambda b: model(**b), latency_batches, source.setup.device)
    ctx: CompressContext = compress_context(cell, source, model)
    start = time.perf_counter()
    result = method.compress(model, ctx)
    stage_time = time.perf_counter() - start
    model.eval()
    scores = evaluate_cell(source.cell, source.setup, model)
    stored_bytes, pattern_ok = storage(model, result.sparse)
    return PosthocMeasurements(
        scores=score_rows(source, scores),
        stage_time_s=stage_time,
        stored_bytes=stored_bytes,
        stored_params=sum(p.numel() for p in model.parameters()),
        heads_bytes=safetensors_bytes(source.head),
        sparsity=result.pruned / result.total if result.total else None,
        level=result.level,
        level_label=result.level_label,
        pattern_ok=pattern_ok,
        nonzero_params=sum(int((p != 0).sum()) for p in model.parameters()),
        target_params=result.total,
        total_params=sum(p.numel() for p in model.parameters()),
        latency_s=median_latency(lambda b: model(**b), latency_batches, source.setup.device),
        source_latency_s=dense_latency,
        train_steps=result.train_steps,
        train_wall_s=result.train_wall_s,
        notes=result.notes,
    )


# How one cell of each kind of stage runs (the kinds: suite/specs/posthoc.py STAGE_KINDS).
STAGE_RUNS = {
    "merge": lambda cell, method, inputs: _combine(cell, inputs, method.merge),
    "generate": lambda cell, method, inputs: _combine(cell, inputs, method.generate),
    "compress": _compress,
}
