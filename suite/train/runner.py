"""Run one cell in this process, step by step: load, prepare, train, evaluate, measure."""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from suite.cells import Cell
from suite.methods.api import Method, PrepareContext, Prepared, TrainingPlan
from suite.methods.source import source_hash
from suite.models.storage import parameter_count
from suite.models.taskmodel import head_positions
from suite.plugins import load_object
from suite.results import Measured, Measurements
from suite.tasks.forgetting import ReferenceProbe
from suite.tasks.types import task_type
from suite.train import caches
from suite.train.batches import eval_batches, train_batches
from suite.train.costs import measure
from suite.train.evaluate import predict, score, split_predictions, task_loss
from suite.train.flops import train_flops
from suite.train.loop import LoopConfig, NonFiniteLoss, TrainStats, planned_steps, train
from suite.train.measure import LATENCY_BATCHES, ForwardTimer, PeakMemory
from suite.train.memory import MemoryProbe
from suite.train.phases import PhaseClock
from suite.train.precision import autocast_context, autocast_loss
from suite.train.prepare import prepare_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def method_class(cell: Cell) -> type[Method]:
    return load_object(cell.method.implementation, cell.method.impl_dir)


def instantiate(cell: Cell) -> Method:
    cls = method_class(cell)
    return cls(cls.Params.model_validate(cell.method.params))


def pick_device(cell: Cell) -> torch.device:
    if cell.profile.expected.type == "cuda" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run_cell(cell: Cell, on_step: Callable[[int, int, float], None] | None = None) -> Measured:
    """Run a cell; any exception becomes its outcome (status and error text)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    clock = PhaseClock()
    try:
        outcome = {"status": "ok", "measurements": Measurements(**_run(cell, on_step, clock))}
    except NonFiniteLoss as exc:
        outcome = {"status": "nan", "error": str(exc)}
    except (torch.OutOfMemoryError, MemoryError) as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # so the worker's next cell starts with a clean device
        outcome = {"status": "oom", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    except Exception as exc:  # noqa: BLE001 - a failing cell must never stop the matrix
        outcome = {"status": "failed", "error": "".join(traceback.format_exception(exc))[-4000:]}
    wall = clock.elapsed()
    return Measured(
        **outcome, started_at=started, cell_wall_s=wall, phases=clock.finish(wall),
        model_cached=clock.cached.get("model"), data_cached=clock.cached.get("data"),
    )  # fmt: skip


def _run(cell: Cell, on_step, clock: PhaseClock) -> dict[str, Any]:
    """The cell's measurements, one step (and timed phase) after another."""
    setup = load(cell, clock)
    with clock.phase("prepare"):
        ready = prepare(cell, setup)
    with clock.phase("train"):
        trained = train_cell(cell, setup, ready, on_step)
    with clock.phase("evaluate"):
        scores = evaluate_cell(cell, setup, ready.prepared.model)
    with clock.phase("measure"):
        costs = measure(cell, setup, ready, scores.pop("eval_sets"), scores.pop("test_forwards"))
    with clock.phase("save"):
        saved = save_cell_artifact(cell, ready.prepared) if cell.artifact_dir else {}
    return {
        **ready.fields, **trained, **scores, **costs, **_reference_fields(setup, ready), **saved
    }  # fmt: skip


def save_cell_artifact(cell: Cell, prepared: Prepared) -> dict[str, Any]:
    """Save the trained adapter (a whole model for methods that train every weight) as
    the cell's artifact; the fields that tell the store where it is and what it holds."""
    from suite.artifacts import artifact_file, save_artifact

    if prepared.adapter_state is None:
        raise ValueError(
            f"method {cell.method.name!r} saves no adapter state to keep as an artifact"
        )
    state = prepared.adapter_state()
    backbone = {f"backbone.{n}" for n, _ in prepared.model.backbone.named_parameters()}
    kind = "model" if backbone <= set(state) else "adapter"
    meta = {"cell_id": cell.cell_id, "method": cell.method.name, "task": cell.task.name}
    saved = save_artifact(state, artifact_file(cell.artifact_dir, cell.cell_id), kind, meta)
    return {
        "artifact_path": saved.path,
        "artifact_bytes": saved.bytes,
        "artifact_sha256": saved.sha256,
        "artifact_kind": saved.kind,
    }


@dataclass
class Setup:
    """What a cell loads before any method touches the model."""

    device: torch.device
    data: Any
    tokenizer: Any
    encoded: dict
    model: torch.nn.Module
    steps: int
    pad: int
    collate: Callable
    reference: ReferenceProbe | None
    reference_before: float | None
    memory: PeakMemory


def load(cell: Cell, clock: PhaseClock | None = None) -> Setup:
    """Data, tokenised splits and a fresh seeded task model (from the worker's caches)."""
    clock = clock or PhaseClock()
    device = pick_device(cell)
    with clock.phase("data_load"):
        before = caches.COUNTS["tokenizations"]
        data = caches.task_data(cell.task, cell.task_dir)
        tokenizer = caches.tokenizer(cell.model)
        encoded = caches.encoded(cell.task, cell.task_dir, cell.model)
        clock.cached["data"] = caches.COUNTS["tokenizations"] == before
    with clock.phase("model_load"):
        model, memory, reference = _load_model(cell, device, data, tokenizer, clock)
    budget = cell.budget
    steps = planned_steps(
        len(encoded["train"]), budget.batch_size, budget.epochs, budget.max_steps,
        budget.tokens, cell.task.max_length,
    )  # fmt: skip
    return Setup(
        device=device,
        data=data,
        tokenizer=tokenizer,
        encoded=encoded,
        model=model,
        steps=steps,
        pad=tokenizer.pad_token_id or 0,
        collate=task_type(cell.task).function("collator"),
        reference=reference,
        reference_before=reference.loss(model) if reference else None,
        memory=memory,
    )


def _load_model(cell: Cell, device, data, tokenizer, clock: PhaseClock):
    """The seeded task model on its device, the cell's memory meter, the reference probe."""
    before = caches.COUNTS["model_loads"]
    # Load (or find cached) the backbone before seeding: loading draws random numbers for
    # weights it then overwrites, so the first cell of a worker would otherwise start
    # from a different random state than the same cell run later on that worker.
    caches.warm(cell.model, cell.base_storage)
    clock.cached["model"] = caches.COUNTS["model_loads"] == before
    # The cell's memory counts from here: the worker's caches above are not the cell's.
    memory = PeakMemory(device)
    memory.reset()
    seed_everything(cell.seed)
    model = caches.task_model(cell.model, data.num_outputs, cell.seed, cell.base_storage)
    model = model.to(device)
    # Forgetting (causal LMs, when the matrix names reference texts): the base model's loss.
    reference = ReferenceProbe.for_reference(cell.reference, tokenizer, device)
    return model, memory, reference


@dataclass
class Ready:
    prepared: Prepared
    fields: dict[str, Any]


def prepare(cell: Cell, setup: Setup) -> Ready:
    """The method applied to the task model, with its adapter in fp32 on a low-precision base."""
    cls = method_class(cell)
    method = cls(cls.Params.model_validate(cell.method.params))
    loss_fn = task_loss(cell.task)
    held = _hold_out(setup, method.train_holdout())

    def batches_for_init():
        split = setup.encoded["train"]
        stream = train_batches(
            split, cell.budget.batch_size, setup.pad, setup.collate, cell.seed + 1
        )
        return _to_device(stream, setup.device)

    def holdout_batches():
        stream = train_batches(
            held, cell.budget.batch_size, setup.pad, setup.collate, cell.seed + 2
        )
        return _to_device(stream, setup.device)

    ctx = PrepareContext(
        preset=cell.model,
        seed=cell.seed,
        device=setup.device,
        train_batches=batches_for_init,
        loss_fn=loss_fn,
        training=TrainingPlan(
            lr=cell.method.lr,
            steps=setup.steps,
            warmup_steps=int(cell.budget.warmup_ratio * setup.steps),
            weight_decay=cell.method.weight_decay,
        ),
        holdout_batches=holdout_batches if held is not None else None,
    )
    made = prepare_model(method, setup.model, ctx)
    made.prepared.model.to(setup.device)
    fields = {
        "base_dtype": made.base_dtype,
        "adapter_dtype": made.adapter_dtype,
        "method_source_hash": source_hash(cls),
        "total_params": parameter_count(made.prepared.model),
        "train_holdout_examples": len(held) if held is not None else None,
        **_base_fields(cell, made.prepared),
    }
    return Ready(made.prepared, fields)


def _base_fields(cell: Cell, prepared: Prepared) -> dict[str, Any]:
    """The base's storage and bytes as stored, for training and for inference; refuses a
    method that would train a compressed base's codes."""
    from suite.models.storage import module_bytes, stored_parameters

    model = prepared.model
    trained = [name for name, p in stored_parameters(model) if p.requires_grad]
    if trained:
        raise ValueError(
            f"method '{cell.method.name}' trains weights of the {cell.base_storage} base "
            f"({trained[0]}, ...), which a compressed storage keeps frozen; run it on a "
            "bf16 base (base_storage: bf16)"
        )
    base = prepared.base_bytes() if prepared.base_bytes else module_bytes(model.backbone, False)
    infer = prepared.inference_base_bytes() if prepared.inference_base_bytes else base
    return {
        "base_storage": cell.base_storage or cell.model.dtype,
        "base_bytes": base,
        "inference_base_bytes": infer,
    }


def _hold_out(setup: Setup, fraction: float):
    """Take a fixed share of the training split out of the training stream (the same
    examples whatever the seed); returns the held-out split, or None."""
    if not fraction:
        return None
    from suite.tasks.encoding import split_examples

    train = setup.encoded["train"]
    n_held = max(1, int(round(fraction * len(train))))
    order = np.random.default_rng(0).permutation(len(train))
    held, kept = split_examples(train, order[:n_held]), split_examples(train, order[n_held:])
    setup.encoded = {**setup.encoded, "train": kept}
    return held


def train_cell(cell: Cell, setup: Setup, ready: Ready, on_step) -> dict[str, Any]:
    """Train within the budget; the peak memory and the counts after training."""
    prepared, model = ready.prepared, ready.prepared.model
    cfg = LoopConfig(
        steps=setup.steps,
        lr=cell.method.lr,
        weight_decay=cell.method.weight_decay,
        warmup_ratio=cell.budget.warmup_ratio,
        grad_clip=cell.budget.grad_clip,
    )
    batches = train_batches(
        setup.encoded["train"], cell.budget.batch_size, setup.pad, setup.collate, cell.seed,
        cell.budget.length_bucket_window,
    )  # fmt: skip
    stream = _to_device(batches, setup.device)
    # For FLOPs: tokens trained on (padded as the model ran them, real), and the positions
    # the LM head ran at and was needed at (the shared-prompt form runs it at a few).
    tokens = [0, 0, 0, 0]
    memory = setup.memory
    report = (lambda s, loss: on_step(s + 1, setup.steps, loss)) if on_step else None
    probe = MemoryProbe(model)
    loss = autocast_loss(task_loss(cell.task), setup.device, cell.budget.autocast)
    stats = train(prepared, _counted(stream, tokens), loss, cfg, on_step=report, probe=probe)
    peak = memory.peak_bytes()
    # Counted after training: ranks IncreLoRA grew and ranks SoRA pruned both count.
    head = _trainable(model.head)
    trainable = prepared.trainable_count() + head if prepared.trainable_count else _trainable(model)
    return {
        "trainable_params": trainable,
        "adapter_params": trainable - head,
        "peak_memory_bytes": peak,
        "peak_memory_isolated": memory.isolated,
        "memory_baseline_bytes": memory.baseline_bytes,
        "cached_model_bytes": caches.cached_model_bytes(),
        "train_tokens": tokens[0],
        "train_real_tokens": tokens[1],
        "tokens_per_s": tokens[0] / stats.wall_s if stats.wall_s else None,
        "train_flops": train_flops(model, tokens[0], tokens[2]),
        "train_flops_real": train_flops(model, tokens[1], tokens[3]),
        **_train_stats(stats),
        # After the stats: the optimiser state at its largest over the steps, not the last.
        **probe.fields(peak),
    }


def _train_stats(stats: TrainStats) -> dict[str, Any]:
    return {
        "train_wall_s": stats.wall_s,
        "train_steps": stats.steps,
        "samples_per_s": stats.samples_per_s,
        "step_time_median_s": stats.step_time_median,
        "final_train_loss": stats.final_loss,
        "loss_curve": stats.losses,
        "optimizer_state_bytes": stats.optimizer_state_bytes,
    }


def evaluate_cell(cell: Cell, setup: Setup, model: torch.nn.Module) -> dict[str, Any]:
    """Validation and test metrics and per-example predictions on fixed batches.

    A tuning trial's test results are kept apart (split "trial_test"): selection reads
    only validation, so they cannot steer it; the tuning-budget curves use them."""
    model.eval()
    eval_sets = {
        s: _to_list(
            eval_batches(setup.encoded[s], cell.task.eval_batch_size, setup.pad, setup.collate),
            setup.device,
        )
        for s in ("validation", "test")
    }
    # The test split's first forwards are timed as they run: the unmerged latency.
    timer = ForwardTimer(model, setup.device, LATENCY_BATCHES)
    with autocast_context(setup.device, cell.budget.autocast):
        found = {"validation": predict(model, eval_sets["validation"], cell.task, setup.tokenizer)}
        with timer:
            found["test"] = predict(model, eval_sets["test"], cell.task, setup.tokenizer)
    val, test = (score(cell.task, found[s]) for s in ("validation", "test"))
    trial = cell.phase == "trial"
    test_split = "trial_test" if trial else "test"
    baselines = caches.baselines(cell.task, cell.task_dir)
    return {
        "val_metrics": val,
        "test_metrics": {} if trial else test,
        "trial_test_metrics": test if trial else {},
        "predictions": {
            "validation": split_predictions(found["validation"]),
            test_split: split_predictions(found["test"]),
        },
        "baseline_val": baselines.get("validation", {}),
        "baseline_test": baselines.get("test", {}),
        "eval_sets": eval_sets,
        "test_forwards": timer,
    }


def _reference_fields(setup: Setup, ready: Ready) -> dict[str, Any]:
    if setup.reference is None:
        return {}
    return setup.reference.fields(setup.reference_before, ready.prepared.model)


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _counted(stream, tokens: list[int]):
    """Count each batch's tokens as run (padded) and real (attention mask), and its LM
    head's positions (run, needed), in place."""
    for batch in stream:
        # Image batches have no input_ids (their tokens are patches); count text tokens only.
        if "input_ids" in batch:
            tokens[0] += int(batch["input_ids"].numel())
            mask = batch.get("attention_mask")
            tokens[1] += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
            run, needed = head_positions(batch)
            tokens[2] += run
            tokens[3] += needed
        yield batch


def _to_device(stream, device):
    for batch in stream:
        yield {k: v.to(device) for k, v in batch.items()}


def _to_list(batches, device):
    return [{k: v.to(device) for k, v in b.items()} for b in batches]
