"""The threshold step on a rank gate that SoRA's SparseAdamW introduced and CoDyRA's
training loop repeats word for word (TsinghuaC3I/SoRA src/sparse_optimizer.py;
Artificer-AI-Lab/CoDyRA models/codyra.py, train_model)."""

from __future__ import annotations

import torch


@torch.no_grad()
def threshold_step(g: torch.Tensor, lam: float) -> None:
    """The three masked updates, in order: g[g > lam] -= lam, then g[g < -lam] += lam,
    then g[|g| < lam] = 0 on the shifted values. Not a soft threshold: an entry in
    (lam, 2 lam) is shifted below lam and then zeroed, so every |g| < 2 lam ends at 0
    (but +-lam itself survives) and larger ones shrink by lam."""
    shifted = torch.where(g > lam, g - lam, torch.where(g < -lam, g + lam, g))
    g.copy_(torch.where(shifted.abs() < lam, torch.zeros_like(shifted), shifted))
