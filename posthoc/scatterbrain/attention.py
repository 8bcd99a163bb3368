"""Scatterbrain's sparse + low-rank attention (HazyResearch/fly@6b73449, SBLocalAttention).

Softmax attention exp(q k^T t) / Z is approximated by a low-rank part, Performer's
positive random features phi (the cosh variant, features [exp(w x), exp(-w x)]), plus a
sparse correction on a local band: inside the band (key j with |i - j| within the
window of `local_context` keys centred on query i: j = i - c//2 .. i - c//2 + c - 1) the
low-rank estimate phi(q_i) phi(k_j) is replaced by the exact exp(q_i k_j t). With
S the band and L = phi(Q) phi(K)^T,

    out = [ (exp(QK^T t) - L) on S ] V + L V,  all divided by
    Z_i = sum_{j in S} exp(q_i k_j t) + (sum_j L_ij - sum_{j in S} L_ij),

computed in log space as the reference does (feature maps carry log-scales; the
normaliser is logaddexp of the band's logsumexp and the log of the low-rank remainder,
clamped at 1e-24). Keys that are padding are left out of both parts.

The band is gathered with `unfold` over a zero-padded copy of the keys and values, so its
cost is O(T c) like the reference's fast_transformers `local_dot_product` /
`local_weighted_average` kernels (which this replaces: same window, same -1e24 fill of
out-of-range scores before the temperature is applied). Self-attention only (queries
and keys are the same positions), bidirectional only (the reference's causal path is
not implemented here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# The score the reference's local kernel writes where the window leaves the sequence.
OUTSIDE = -1e24


def orthogonal_gaussian(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """Performer's orthogonal random projection (`gaussian_orthogonal_random_matrix`,
    scaling 0): rows of Haar-orthogonal blocks, each scaled by the norm of a Gaussian row.
    Drawn on the CPU in the reference's order (the blocks, then the norms)."""
    blocks = math.ceil(rows / cols)
    q, r = torch.linalg.qr(torch.randn(blocks, cols, cols, generator=generator))
    q = q * torch.diagonal(r, dim1=-2, dim2=-1).sign()[:, None, :]
    ortho = q.transpose(1, 2).reshape(blocks * cols, cols)[:rows]
    norms = torch.randn(rows, cols, generator=generator).norm(dim=1)
    return norms[:, None] * ortho


def performer_features(
    x: torch.Tensor, projection: torch.Tensor, temp: float, eps: float, is_query: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, log-scale) with features * exp(log-scale) = phi(x) (the reference's
    `softmax_kernel`, cosh variant). Queries are stabilised per row, keys by one maximum
    over the whole sequence (padding included, as in the reference)."""
    m = 2 * projection.shape[0]
    root = math.sqrt(temp)
    dash = x @ (root * projection.to(x.dtype)).T
    dash = torch.cat([dash, -dash], dim=-1)
    half_norm = x.square().sum(dim=-1, keepdim=True) / 2 * temp
    if is_query:
        top = dash.amax(dim=-1, keepdim=True)
        log_scale = -half_norm + top - math.log(m) / 2
        feats = torch.exp(dash - top)
    else:
        shifted = dash - half_norm - math.log(m) / 2
        log_scale = shifted.amax(dim=(-1, -2), keepdim=True)
        feats = torch.exp(shifted - log_scale)
    return feats + eps / math.sqrt(m), log_scale


def windows(x: torch.Tensor, context: int) -> torch.Tensor:
    """(B, H, T, E) -> (B, H, T, E, c): for position i the rows i - c//2 .. i - c//2 + c - 1
    (zeros outside the sequence)."""
    left = context // 2
    padded = F.pad(x, (0, 0, left, context - 1 - left))
    return padded.unfold(2, context, 1)


def window_keep(keep: torch.Tensor, context: int) -> torch.Tensor:
    """(B, S) real-key mask -> (B, 1, S, c): which window slots hold a real key."""
    left = context // 2
    padded = F.pad(keep.to(torch.uint8), (left, context - 1 - left))
    return padded.unfold(1, context, 1)[:, None].bool()


def band_scores(q: torch.Tensor, k: torch.Tensor, context: int) -> torch.Tensor:
    """q_i . k_j for every j in i's window: (B, H, T, c)."""
    return torch.einsum("bhte,bhtec->bhtc", q, windows(k, context))


def band_average(weights: torch.Tensor, v: torch.Tensor, context: int) -> torch.Tensor:
    """sum over i's window of weights[i, slot] v_j: (B, H, T, D)."""
    return torch.einsum("bhtc,bhtdc->bhtd", weights, windows(v, context))


def sblocal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor,
    projection: torch.Tensor,
    context: int,
    temp: float,
    eps: float = 0.0,
) -> torch.Tensor:
    """Scatterbrain (local + Performer) attention of q, k, v (B, H, T, E), keys masked by
    `keep` (B, T) bool; returns (B, H, T, D). See the module doc."""
    if q.shape[-2] != k.shape[-2]:
        raise ValueError("Scatterbrain's local band needs self-attention (as many keys as queries)")
    qf, q_log = performer_features(q, projection, temp, eps, is_query=True)
    kf, k_log = performer_features(k, projection, temp, eps, is_query=False)
    kf = kf * keep[:, None, :, None].to(kf.dtype)
    log_scale = q_log + k_log
    low_rank_out = qf @ (kf.transpose(-1, -2) @ v)
    low_rank_sum = (qf @ kf.sum(dim=-2)[..., None]).squeeze(-1)

    valid = window_keep(keep, context)
    exact = temp * band_scores(q, k, context).masked_fill(~valid, OUTSIDE)
    estimate = band_scores(qf, kf, context).masked_fill(~valid, 0.0)

    remainder = (low_rank_sum[..., None] - estimate.sum(dim=-1, keepdim=True)).clamp_min(1e-24)
    log_z = torch.logaddexp(
        torch.logsumexp(exact, dim=-1, keepdim=True), torch.log(remainder) + log_scale
    )
    low_rank_weight = torch.exp(log_scale - log_z)
    correction = torch.exp(exact - log_z) - estimate * low_rank_weight
    return band_average(correction, v, context) + low_rank_out * low_rank_weight


def exact_pairs(keep: torch.Tensor, context: int) -> tuple[int, int]:
    """(query-key pairs scored exactly, all pairs) over real tokens of (B, T) masks."""
    valid = window_keep(keep, context)[:, 0] & keep[:, :, None]
    lengths = keep.sum(dim=-1)
    return int(valid.sum()), int((lengths * lengths).sum())
