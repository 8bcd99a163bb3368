"""Merging task updates: weighted sums, TIES, LoRA-LEGO's rank clustering, RMM's basis.

A task update (a task vector) is what fine-tuning added to the shared base weights,
tau_t = theta_t - theta_0, one tensor per changed weight. Low-rank updates also come as
their factors (B_t, A_t) with tau_t = B_t A_t (the LoRA scale folded into B).

- `weighted_sum`: sum_t w_t tau_t (linear averaging: w_t = 1/T; task arithmetic,
  Ilharco et al. 2023: w_t = lambda for every task).
- `ties`: TIES-merging (Yadav et al. 2023): trim each task vector to its top `density`
  share by magnitude, elect a sign per entry (the sign of the summed trimmed values),
  and average, per entry, only the values that agree with it (disjoint merge); scaled by
  the weights. Per tensor, as Hugging Face PEFT's `utils/merge_utils.ties` (compared
  live in tests/test_posthoc_merging.py), or over the whole model as Yadav et al.'s code
  flattens it.
- `lego_merge`: LoRA-LEGO (arXiv 2409.16167; only summaries could be read): every rank of
  every LoRA, (B[:, i], A[i, :]) concatenated, is a unit; k-means over the pooled units
  of a module; the k centroids are the merged rank-k LoRA; the two rescalings are the
  project's reading (see the function).
- `rmm_store`: Reversible Model Merging (arXiv 2510.14163; summaries only): per module
  and per "position" (a row of B_t or a column of A_t, a vector in R^r across the T
  tasks) a mean plus a p-dimensional basis from the SVD of the centred vectors (the
  Eckart-Young optimum), with per-task coefficients; each task's factors are rebuilt
  from it. The project's reading of the closed form.
"""

from __future__ import annotations

import math

import torch


def weighted_sum(updates: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """sum_t w_t tau_t."""
    out = torch.zeros_like(updates[0], dtype=torch.float32)
    for update, weight in zip(updates, weights, strict=True):
        out += weight * update.float()
    return out


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


def kmeans(
    points: torch.Tensor, k: int, generator: torch.Generator, iters: int = 100, n_init: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding; the best of `n_init` runs by inertia.
    Returns (centroids k x dim, labels). An empty cluster keeps its centroid."""
    best = None
    for _ in range(n_init):
        centroids = _plus_plus(points, k, generator)
        for _ in range(iters):
            labels = torch.cdist(points, centroids).argmin(dim=1)
            moved = centroids.clone()
            for c in range(k):
                members = points[labels == c]
                if len(members):
                    moved[c] = members.mean(dim=0)
            if torch.allclose(moved, centroids):
                break
            centroids = moved
        labels = torch.cdist(points, centroids).argmin(dim=1)
        inertia = float(((points - centroids[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centroids, labels)
    return best[1], best[2]


def _plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    first = int(torch.randint(len(points), (1,), generator=generator))
    chosen = [points[first]]
    for _ in range(1, k):
        d2 = torch.cdist(points, torch.stack(chosen)).min(dim=1).values ** 2
        if float(d2.sum()) == 0:
            chosen.append(points[int(torch.randint(len(points), (1,), generator=generator))])
            continue
        chosen.append(points[int(torch.multinomial(d2 / d2.sum(), 1, generator=generator))])
    return torch.stack(chosen)


def lego_merge(
    factors: list[tuple[torch.Tensor, torch.Tensor]],
    k: int,
    generator: torch.Generator,
    reweight_params: bool = True,
    reweight_output: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA-LEGO on one module: the merged (B, A) of rank k from the tasks' (B_t, A_t).

    Units are sqrt-balanced: unit i of task t is [B_t[:, i]; A_t[i, :]] with the LoRA scale
    already folded into B. Rescalings (the project's reading; the paper's formulas were
    not readable): parameter reweighting gives each centroid the mean norm of its members
    (averaging shrinks norms); output reweighting multiplies the merged update by
    sqrt(mean input rank / k) (an update summing k units in place of r grows its output
    variance by k / r)."""
    m = factors[0][0].shape[0]
    units = torch.cat([torch.cat([b.float().T, a.float()], dim=1) for b, a in factors], dim=0)
    k = min(k, len(units))
    centroids, labels = kmeans(units, k, generator)
    if reweight_params:
        for c in range(k):
            members = units[labels == c]
            if len(members) and float(centroids[c].norm()) > 0:
                centroids[c] *= members.norm(dim=1).mean() / centroids[c].norm()
    b_merged, a_merged = centroids[:, :m].T.contiguous(), centroids[:, m:].contiguous()
    if reweight_output:
        mean_rank = sum(b.shape[1] for b, _ in factors) / len(factors)
        scale = math.sqrt(mean_rank / k)
        b_merged, a_merged = b_merged * math.sqrt(scale), a_merged * math.sqrt(scale)
    return b_merged, a_merged


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


def compact(deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors an update needs to be kept: each as (int32 flat indices, values) where
    at most half its entries are nonzero, else dense."""
    out = {}
    for name, delta in deltas.items():
        nonzero = torch.nonzero(delta.reshape(-1)).reshape(-1)
        if len(nonzero) <= delta.numel() // 2:
            out[f"{name}.indices"] = nonzero.to(torch.int32)
            out[f"{name}.values"] = delta.reshape(-1)[nonzero].contiguous()
        else:
            out[name] = delta.contiguous()
    return out


def concatenated(updates, weights: list[float]) -> dict[str, torch.Tensor] | None:
    """A weighted sum of low-rank updates kept exactly as one LoRA of the summed rank,
    [w_1 B_1 ... w_T B_T] [A_1; ...; A_T] (None unless every update is low-rank)."""
    if not all(u.factors and set(u.factors) == set(u.deltas) for u in updates):
        return None
    out = {}
    for name in updates[0].factors:
        if not all(name in u.factors for u in updates):
            return None
        pairs = [
            (w * u.factors[name][0], u.factors[name][1])
            for u, w in zip(updates, weights, strict=True)
        ]
        out[f"{name}.B"] = torch.cat([b for b, _ in pairs], dim=1).contiguous()
        out[f"{name}.A"] = torch.cat([a for _, a in pairs], dim=0).contiguous()
    return out


def summed(updates, weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_t w_t tau_t for every parameter any task changed."""
    names = sorted({n for u in updates for n in u.deltas})
    out = {}
    for name in names:
        parts = [
            (u.deltas[name], w) for u, w in zip(updates, weights, strict=True) if name in u.deltas
        ]
        out[name] = weighted_sum([p for p, _ in parts], [w for _, w in parts])
    return out
