"""TIES-merging (Yadav et al. 2023): trim each task vector to its top `density` share by
magnitude, elect a sign per entry (the sign of the summed trimmed values), and average,
per entry, only the values that agree with it (disjoint merge); scaled by the weights.
Per tensor, as Hugging Face PEFT's `utils/merge_utils.ties` (compared live in
tests/test_posthoc_merging.py), or over the whole model as Yadav et al.'s code flattens
it. Only the ties method uses it (its impl.py loads it from this folder).
"""

from __future__ import annotations

import math

import torch


def trim(update: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the int(density x numel) largest-magnitude entries (PEFT's magnitude prune)."""
    if density >= 1:
        return update
    k = int(density * update.numel())
    keep = torch.zeros(update.numel(), dtype=update.dtype, device=update.device)
    keep[torch.topk(update.abs().reshape(-1), k=k, largest=True)[1]] = 1
    return update * keep.reshape(update.shape)


def elect_and_merge(trimmed: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sign election by total mass and the disjoint mean of the weighted agreeing values.
    `trimmed` stacks the task tensors on dim 0."""
    sign = trimmed.sign()
    elected = torch.where(trimmed.sum(dim=0) >= 0, 1, -1)
    agree = sign == elected
    weighted = trimmed * weights.reshape(-1, *([1] * (trimmed.dim() - 1)))
    return (weighted * agree).sum(dim=0) / torch.clamp(agree.sum(dim=0), min=1.0)


def ties(updates: list[torch.Tensor], weights: list[float], density: float) -> torch.Tensor:
    """TIES-merging of one tensor's task updates (trim, elect sign, disjoint merge)."""
    stacked = torch.stack([trim(u.float(), density) for u in updates], dim=0)
    return elect_and_merge(stacked, torch.tensor(weights, dtype=stacked.dtype))


def ties_model(
    updates: list[dict[str, torch.Tensor]], weights: list[float], density: float
) -> dict[str, torch.Tensor]:
    """TIES with the trim over each task's whole flattened task vector (Yadav et al.'s
    code), then sign election and disjoint merge entry by entry."""
    names = sorted({n for u in updates for n in u})
    flat = []
    for u in updates:
        parts = [
            u[n].float().reshape(-1) if n in u else torch.zeros(_numel(updates, n)) for n in names
        ]
        flat.append(trim(torch.cat(parts), density))
    merged = elect_and_merge(torch.stack(flat), torch.tensor(weights))
    out, at = {}, 0
    for n in names:
        shape = next(u[n].shape for u in updates if n in u)
        size = math.prod(shape)
        out[n] = merged[at : at + size].reshape(shape)
        at += size
    return out


def _numel(updates: list[dict[str, torch.Tensor]], name: str) -> int:
    return next(u[name].numel() for u in updates if name in u)
