"""Reversible Model Merging (arXiv 2510.14163; summaries only): per module and per
"position" (a row of B_t or a column of A_t, a vector in R^r across the T tasks) a mean
plus a p-dimensional basis from the SVD of the centred vectors (the Eckart-Young
optimum), with per-task coefficients; each task's factors are rebuilt from it. The
project's reading of the closed form. Only the rmm method uses it (its impl.py loads it
from this folder).
"""

from __future__ import annotations

import torch


def rmm_store(vectors: torch.Tensor, p: int, center: bool = True) -> dict[str, torch.Tensor]:
    """RMM's compact store of `vectors` (positions x r x T: each position's r-vector for
    every task): a mean (positions x r), a basis (positions x r x p) and coefficients
    (positions x p x T), per position, from the top-p left singular vectors."""
    x = vectors.float()
    mean = x.mean(dim=2, keepdim=True) if center else torch.zeros_like(x[..., :1])
    u, _, _ = torch.linalg.svd(x - mean, full_matrices=False)
    basis = u[..., :p]
    coefficients = basis.transpose(1, 2) @ (x - mean)
    return {"mean": mean.squeeze(-1), "basis": basis, "coefficients": coefficients}


def rmm_rebuild(store: dict[str, torch.Tensor], task: int) -> torch.Tensor:
    """Task `task`'s vectors (positions x r) rebuilt from the store."""
    return store["mean"] + (store["basis"] @ store["coefficients"][..., task : task + 1])[..., 0]


def factor_positions(factors: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The tasks' (B_t, A_t) as RMM's positions: the rows of B (d_out) then the columns
    of A (d_in), each an r-vector per task: (d_out + d_in) x r x T."""
    rows = torch.stack([b.float() for b, _ in factors], dim=-1)
    cols = torch.stack([a.float().T for _, a in factors], dim=-1)
    return torch.cat([rows, cols], dim=0)


def positions_to_factors(vectors: torch.Tensor, d_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of `factor_positions` for one task's rebuilt vectors (positions x r)."""
    return vectors[:d_out], vectors[d_out:].T
