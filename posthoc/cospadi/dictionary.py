"""CoSpaDi's factorisation, as read from arXiv 2509.22075's abstracts (no code found).

In the paper's layout a weight maps inputs on the left, Y = X W with W (d_in x d_out);
it becomes W ~ D C, a dense dictionary D (d_in x k) and a coefficient matrix C
(k x d_out) with s nonzeros in every column (each output unit combines its own s atoms:
a union of subspaces). Calibration-guided: the loss is on the layer's outputs,
||X W - X D C||_F. With G = X^T X + damp I = R^T R (Cholesky), that is
||R W - (R D) C||_F: plain dictionary learning on the transformed weight R W, whose
dictionary is mapped back by D = R^-1 D~ (the "activation-derived Gram
orthonormalisation" of the v4 abstract).

The learning here is K-SVD (Aharon et al.) in its approximate form (one power step per
atom, Rubinstein et al.'s AK-SVD) with Batch-OMP sparse coding (Cholesky updates on the
dictionary's Gram matrix); the dictionary starts at the transformed weight's top-k left
singular vectors (random unit atoms beyond its rank). Budget: k atoms and s = k x
`coef_share` nonzeros per column, with d_in k + d_out s = (1 - ratio) d_in d_out.
"""

from __future__ import annotations

import math

import torch


def sizes(d_in: int, d_out: int, ratio: float, coef_share: float) -> tuple[int, int]:
    """(k, s) keeping (1 - ratio) of the d_in x d_out values: d_in k + d_out s."""
    keep = (1 - ratio) * d_in * d_out
    k = max(1, math.floor(keep / (d_in + coef_share * d_out)))
    return k, max(1, min(k, math.floor(coef_share * k)))


def whitening(gram: torch.Tensor, damp: float) -> torch.Tensor:
    """R with R^T R = G + damp * mean(diag G) * I (upper triangular)."""
    g = gram.double()
    g = g + damp * g.diagonal().mean().clamp_min(1e-12) * torch.eye(len(g), dtype=g.dtype)
    return torch.linalg.cholesky(g).T


def batch_omp(
    dictionary: torch.Tensor, signals: torch.Tensor, s: int, chunk: int = 128
) -> torch.Tensor:
    """Codes C (k x n) with s nonzeros per column, signals ~ dictionary @ C; atoms are
    unit-norm columns. Greedy: each step adds the atom most correlated with the residual
    and refits the column's coefficients on its support by least squares (Batch-OMP:
    Cholesky updates of the support's Gram). Columns go `chunk` at a time (memory)."""
    gram = dictionary.T @ dictionary
    alpha0 = dictionary.T @ signals  # k x n
    parts = [
        _omp_columns(gram, alpha0[:, i : i + chunk], s) for i in range(0, alpha0.shape[1], chunk)
    ]
    return torch.cat(parts, dim=1)


def _omp_columns(gram: torch.Tensor, alpha0: torch.Tensor, s: int) -> torch.Tensor:
    k, n = alpha0.shape
    cols = torch.arange(n)
    chosen = torch.zeros(n, s, dtype=torch.long)
    low = torch.zeros(n, s, s, dtype=alpha0.dtype)
    low[:, 0, 0] = 1.0
    alpha, taken = alpha0, torch.zeros(k, n, dtype=torch.bool)
    coef = alpha0[:0].T
    for t in range(s):
        j = alpha.abs().masked_fill(taken, -1.0).argmax(dim=0)
        taken[j, cols] = True
        if t > 0:
            g = gram[chosen[:, :t], j[:, None]]  # n x t: <d_i, d_j> over the support
            v = torch.linalg.solve_triangular(low[:, :t, :t], g[..., None], upper=False)[..., 0]
            low[:, t, :t] = v
            low[:, t, t] = (1 - v.square().sum(-1)).clamp_min(1e-10).sqrt()
        chosen[:, t] = j
        support = chosen[:, : t + 1]
        rhs = alpha0[support, cols[:, None]][..., None]
        coef = torch.cholesky_solve(rhs, low[:, : t + 1, : t + 1], upper=False)[..., 0]
        alpha = alpha0 - torch.einsum("kna,na->kn", gram[:, support], coef)
    codes = torch.zeros(k, n, dtype=alpha0.dtype)
    codes[chosen.T, cols[None, :]] = coef.T
    return codes


def initial_dictionary(target: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Top-k left singular vectors of the target; random unit atoms past its rank."""
    u = torch.linalg.svd(target, full_matrices=False)[0]
    extra = k - u.shape[1]
    if extra <= 0:
        return u[:, :k].clone()
    rand = torch.randn(target.shape[0], extra, generator=gen, dtype=target.dtype)
    return torch.cat([u, rand / rand.norm(dim=0)], dim=1)


def ksvd(
    target: torch.Tensor, k: int, s: int, iterations: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, C): target (m x n) ~ D (m x k, unit atoms) @ C (k x n, s nonzeros a column)."""
    dictionary = initial_dictionary(target, k, gen)
    codes = batch_omp(dictionary, target, s)
    for _ in range(iterations):
        residual = target - dictionary @ codes
        for j in range(k):
            users = codes[j].nonzero()[:, 0]
            if len(users) == 0:
                continue
            g = codes[j, users]
            error = residual[:, users] + dictionary[:, j, None] * g[None, :]
            atom = error @ g
            norm = atom.norm()
            if norm == 0:
                continue
            atom = atom / norm
            g = error.T @ atom
            dictionary[:, j], codes[j, users] = atom, g
            residual[:, users] = error - atom[:, None] * g[None, :]
        codes = batch_omp(dictionary, target, s)
    return dictionary, codes


def cospadi_factors(
    weight: torch.Tensor,
    gram: torch.Tensor,
    k: int,
    s: int,
    iterations: int,
    damp: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch layout: weight (d_out x d_in) ~ coefs (d_out x k, s nonzeros a row) @
    atoms (k x d_in), the calibration inputs' Gram `gram` (d_in x d_in) weighting it."""
    r = whitening(gram, damp)
    w = weight.detach().double().T  # the paper's W, d_in x d_out
    dictionary, codes = ksvd(r @ w, k, s, iterations, gen)
    atoms = torch.linalg.solve_triangular(r, dictionary, upper=True)  # D = R^-1 D~
    return codes.T.float(), atoms.T.float()
