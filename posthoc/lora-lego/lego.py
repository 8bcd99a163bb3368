"""LoRA-LEGO (arXiv 2409.16167; only summaries could be read): every rank of every LoRA,
(B[:, i], A[i, :]) concatenated, is a unit; k-means over the pooled units of a module;
the k centroids are the merged rank-k LoRA; the two rescalings are the project's reading
(see `lego_merge`). Only the lora-lego method uses it (its impl.py loads it from here).
"""

from __future__ import annotations

import math

import torch


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
