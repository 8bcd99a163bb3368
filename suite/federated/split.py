"""Partitions of a training split over simulated clients (pure, seeded, deterministic)."""

from __future__ import annotations

import numpy as np

from suite.specs.federated import DirichletSplit, IIDSplit


def partition(labels: np.ndarray, clients: int, split: IIDSplit | DirichletSplit, seed: int):
    """Each client's example indices (sorted), every example in exactly one client.

    Dirichlet: per class, proportions p ~ Dir(alpha 1_N) cut the class's shuffled
    examples at the cumulative counts (the FedLab / Hsu et al. recipe); a client may end
    up empty at a small alpha, and the run then gives it no weight.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    if isinstance(split, IIDSplit):
        return [np.sort(part) for part in np.array_split(rng.permutation(n), clients)]
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iub":
        raise ValueError("a Dirichlet split needs one class label per example")
    shares: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        p = rng.dirichlet(np.full(clients, split.alpha))
        cuts = (np.cumsum(p)[:-1] * len(members)).astype(int)
        for client, part in enumerate(np.split(members, cuts)):
            shares[client].append(part)
    return [np.sort(np.concatenate(s)).astype(np.int64) for s in shares]


def label_skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between a client's label mix and the whole split's,
    weighted by client size: 0 for identical mixes, towards 1 for disjoint ones."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    overall = np.array([(labels == c).mean() for c in classes])
    total, skew = 0, 0.0
    for part in parts:
        if len(part) == 0:
            continue
        own = np.array([(labels[part] == c).mean() for c in classes])
        skew += len(part) * 0.5 * np.abs(own - overall).sum()
        total += len(part)
    return skew / total
