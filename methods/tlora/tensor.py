"""TLoRA's two tensor structures: a tensor-ring matrix (TRM) transform and a tensor-ring
(TR) residual, as read from arXiv 2501.08727's summary (the code, taozerui/tlora_diffusion,
could not be read).

A dimension n is split into `order` factors n = n_1 ... n_D (the most balanced split
from its prime factors); an index i is (i_1, ..., i_D), i_1 the most significant.

- TRM: T (I x I) from D cores A^d (I_d x I_d x R x R):
  T[(i_1..i_D), (j_1..j_D)] = tr(A^1[i_1, j_1] ... A^D[i_D, j_D]).
  With every A^d[i, j] = delta_ij / R times the all-ones R x R matrix, T = I
  (the paper's Proposition 1), so the model is unchanged at init.
- TR: Delta (O x I) from cores B^d (O_d x R x R) and C^d (I_d x R x R):
  Delta[(o_1..o_D), (i_1..i_D)] = tr(B^1[o_1] ... B^D[o_D] C^1[i_1] ... C^D[i_D]).
  B^1 starts at zero (Delta = 0 at init), the other cores N(0, 1/R): each core slice is
  an R x R map, and muP's sigma = sqrt(n_out) / n_in with n_in = n_out = R is 1/sqrt(R)
  (the project's reading of the summary's "sigma = Theta(sqrt(n_out)/n_in)").
"""

from __future__ import annotations

import torch


def prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


def balanced_factors(n: int, order: int) -> list[int]:
    """n as `order` factors, each prime (largest first) given to the smallest so far;
    sorted largest first. A factor may be 1 when n has fewer primes than `order`."""
    parts = [1] * order
    for p in sorted(prime_factors(n), reverse=True):
        parts[parts.index(min(parts))] *= p
    return sorted(parts, reverse=True)


def chain(cores: list[torch.Tensor]) -> torch.Tensor:
    """The ring's open product: cores (n_d x R x R), or (n_d x m_d x R x R), multiplied
    in order over the bond index; returns (prod n_d [x prod m_d]) x R x R with the first
    core's index the most significant."""
    out = cores[0]
    for core in cores[1:]:
        if out.dim() == 3:  # (n, R, R) @ (m, R, R) -> (n m, R, R)
            out = torch.einsum("ars,bst->abrt", out, core).flatten(0, 1)
        else:  # (n, m, R, R) @ (n', m', R, R) -> (n n', m m', R, R)
            out = torch.einsum("abrs,cdst->acbdrt", out, core)
            out = out.flatten(0, 1).flatten(1, 2)
    return out


def trm_matrix(cores: list[torch.Tensor]) -> torch.Tensor:
    """T from the TRM cores: the trace of the chained bond matrices."""
    return chain(cores).diagonal(dim1=-2, dim2=-1).sum(-1)


def tr_matrix(row_cores: list[torch.Tensor], col_cores: list[torch.Tensor]) -> torch.Tensor:
    """Delta (O x I) from the TR cores: tr(rows' chain @ columns' chain)."""
    rows, cols = chain(row_cores), chain(col_cores)
    return torch.einsum("ors,isr->oi", rows, cols)


def identity_trm_cores(dims: list[int], rank: int, **like) -> list[torch.Tensor]:
    """Cores with A^d[i, j] = delta_ij / R * ones(R, R): their TRM is the identity."""
    return [torch.eye(n, **like)[:, :, None, None].expand(n, n, rank, rank) / rank for n in dims]


def residual_cores(
    out_dims: list[int], in_dims: list[int], rank: int, gen: torch.Generator
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """B^1 zero, every other core N(0, 1/R), drawn in order B^2..B^D, C^1..C^D."""
    std = rank**-0.5
    rows = [torch.zeros(out_dims[0], rank, rank)]
    rows += [torch.randn(n, rank, rank, generator=gen) * std for n in out_dims[1:]]
    cols = [torch.randn(n, rank, rank, generator=gen) * std for n in in_dims]
    return rows, cols


def count(d_out: int, d_in: int, rank: int, order: int) -> int:
    """Trainable numbers per layer: TRM cores sum I_d^2 R^2, TR cores (sum O_d + sum I_d) R^2."""
    ins, outs = balanced_factors(d_in, order), balanced_factors(d_out, order)
    return rank * rank * (sum(n * n for n in ins) + sum(ins) + sum(outs))
