"""The rules of Sparse Model Soups (ZIB-IOL/SMS@d04d002), as functions a test can check.

- `phase_share`: each of P prune-retrain phases prunes 1 - (1 - goal)^(1/P) of the weights
  still unpruned (strategies/strategies.py IMP.at_train_end), so P phases reach `goal`.
- `magnitude_masks`: magnitude (L1) pruning of that share of the remaining weights, with
  one threshold over all targets (selector global) or per layer (uniform), as torch's
  prune.L1Unstructured and global_unstructured count it (round(share x remaining)).
- `uniform_soup`: the mean of the retrained copies' weights (UniformEnsembling); copies
  share the mask, so the soup keeps it.
"""

from __future__ import annotations

import torch


def phase_share(goal: float, phases: int) -> float:
    return 1.0 - (1.0 - goal) ** (1.0 / phases)


@torch.no_grad()
def magnitude_masks(
    weights: dict[str, torch.Tensor],
    share: float,
    previous: dict[str, torch.Tensor],
    selector: str = "global",
) -> dict[str, torch.Tensor]:
    """Masks (True = pruned) after pruning `share` of each weight's (uniform) or of all
    weights' (global) still-unpruned entries by smallest magnitude."""
    alive = {n: ~previous[n] if n in previous else torch.ones_like(w, dtype=torch.bool)
             for n, w in weights.items()}  # fmt: skip
    out = {}
    if selector == "uniform":
        for name, w in weights.items():
            out[name] = ~alive[name] | _lowest(w.abs().float(), alive[name], share)
        return out
    scores = torch.cat([w.abs().float()[alive[n]] for n, w in weights.items()])
    k = round(share * len(scores))
    threshold = torch.kthvalue(scores, k).values if k > 0 else None
    for name, w in weights.items():
        new = torch.zeros_like(alive[name])
        if threshold is not None:
            new = alive[name] & (w.abs().float() <= threshold)
        out[name] = ~alive[name] | new
    return out


def _lowest(score: torch.Tensor, alive: torch.Tensor, share: float) -> torch.Tensor:
    k = round(share * int(alive.sum()))
    new = torch.zeros_like(alive)
    if k:
        flat = torch.where(alive, score, torch.full_like(score, float("inf"))).reshape(-1)
        new.view(-1)[torch.topk(flat, k, largest=False).indices] = True
    return new


@torch.no_grad()
def uniform_soup(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The average of the copies' floating-point tensors (others taken from the first)."""
    out = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            out[name] = sum(s[name].float() for s in states).div(len(states)).to(first.dtype)
        else:
            out[name] = first
    return out
