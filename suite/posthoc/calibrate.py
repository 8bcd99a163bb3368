"""Block by block pruning with calibration statistics, as Wanda and DSnoT do it.

The reference (zyxxmu/DSnoT lib/prune.py) walks the decoder blocks in order: it collects
the statistics of every linear sublayer of a block with the block still dense (its inputs
come from the blocks before it, already pruned), prunes all of that block's sublayers,
and only then moves on. Here a block's statistics come from forward hooks during a pass
of the calibration batches through the whole model (the later blocks' outputs are not
used), which gives those same inputs.

Each calibration sequence is added on its own with its padding removed (the reference's
sequences are unpadded, one per call).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from suite.posthoc.pruning import InputStats, PruneRule

_INDEX = re.compile(r"^(.*?\.\d+)(\.|$)")


def block_of(name: str) -> str:
    """The block a sublayer belongs to: its name up to the first numeric part
    ('encoder.layer.3.attention.self.query' -> 'encoder.layer.3'); '' when none."""
    match = _INDEX.match(name)
    return match.group(1) if match else ""


def group_blocks(targets: list[tuple[str, nn.Linear]]) -> list[list[tuple[str, nn.Linear]]]:
    """Targets grouped by block, blocks in the order their first sublayer comes."""
    blocks: dict[str, list[tuple[str, nn.Linear]]] = {}
    for name, module in targets:
        blocks.setdefault(block_of(name), []).append((name, module))
    return list(blocks.values())


@dataclass
class Calibration:
    """How to push the calibration set through the model.

    `run(batch)` is a forward pass; `token_mask(batch)` says which positions are real
    tokens (None: all of them)."""

    batches: list[dict]
    run: Callable[[dict], object]
    token_mask: Callable[[dict], torch.Tensor | None] = lambda batch: batch.get("attention_mask")


@torch.no_grad()
def each_sequence_input(
    sublayers: list[tuple[str, nn.Module]],
    calibration: Calibration,
    add: Callable[[str, torch.Tensor], None],
) -> None:
    """Run the calibration set once; `add(name, x)` gets every sublayer's input for each
    calibration sequence, tokens x channels, its padding removed."""
    current: dict[str, torch.Tensor | None] = {"mask": None}

    def hook(name: str):
        def record(_module, inputs, _output):
            x = inputs[0]
            x = x.reshape(1, -1, x.shape[-1]) if x.dim() == 2 else x
            mask = current["mask"]
            for i in range(x.shape[0]):
                add(name, x[i] if mask is None else x[i][mask[i].bool()])

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in sublayers]
    try:
        for batch in calibration.batches:
            current["mask"] = calibration.token_mask(batch)
            calibration.run(batch)
    finally:
        for h in handles:
            h.remove()


def collect_stats(
    sublayers: list[tuple[str, nn.Linear]], calibration: Calibration
) -> dict[str, InputStats]:
    """Each sublayer's input statistics over the calibration set, one sequence at a time."""
    stats = {n: InputStats(m.in_features, m.weight.device) for n, m in sublayers}
    each_sequence_input(sublayers, calibration, lambda name, x: stats[name].add(x))
    return stats


@torch.no_grad()
def prune_blocks(
    targets: list[tuple[str, nn.Linear]],
    rule: PruneRule,
    calibration: Calibration | None,
    skip: Callable[[str], bool] = lambda name: False,
) -> dict[str, torch.Tensor]:
    """Prune every target in place, block after block; returns each target's mask
    (True = pruned). `skip(name)` marks sublayers DSnoT leaves at their initial mask."""
    masks: dict[str, torch.Tensor] = {}
    for block in group_blocks(targets):
        stats: dict[str, InputStats] = {}
        if rule.needs_stats:
            if calibration is None:
                raise ValueError(f"{rule.method} needs a calibration set")
            stats = collect_stats(block, calibration)
        for name, module in block:
            mask = rule.mask(module.weight.data, stats.get(name), skip=skip(name))
            module.weight.data[mask] = 0
            masks[name] = mask
    return masks


def sparsity_of(masks: Iterable[torch.Tensor]) -> tuple[int, int]:
    """(pruned, total) entries over the masks."""
    pruned = total = 0
    for mask in masks:
        pruned += int(mask.sum())
        total += mask.numel()
    return pruned, total
