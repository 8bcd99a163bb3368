"""The train phase: the prepared model trained within the cell's budget, and what that
cost (peak memory, tokens, FLOPs, the loop's timings, the parameter counts after it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from suite.cells import Cell
from suite.models.taskmodel import head_positions
from suite.train import caches
from suite.train.batches import to_device, train_batches
from suite.train.flops import train_flops
from suite.train.loop import LoopConfig, TrainStats, train
from suite.train.memory import MemoryProbe
from suite.train.precision import autocast_loss

if TYPE_CHECKING:
    from suite.train.load import Setup
    from suite.train.prepare import Ready


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
    stream = to_device(batches, setup.device)
    # For FLOPs: tokens trained on (padded as the model ran them, real), and the positions
    # the LM head ran at and was needed at (the shared-prompt form runs it at a few).
    tokens = [0, 0, 0, 0]
    memory = setup.memory
    report = (lambda s, loss: on_step(s + 1, setup.steps, loss)) if on_step else None
    probe = MemoryProbe(model)
    loss = autocast_loss(setup.loss, setup.device, cell.budget.autocast)
    stats = train(prepared, counted(stream, tokens), loss, cfg, on_step=report, probe=probe)
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


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def counted(stream, tokens: list[int]):
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
