"""Merging primitives several merge methods share: weighted sums of task updates, and
the compact form an update is stored in.

A task update (a task vector) is what fine-tuning added to the shared base weights,
tau_t = theta_t - theta_0, one tensor per changed weight. Low-rank updates also come as
their factors (B_t, A_t) with tau_t = B_t A_t (the LoRA scale folded into B).

- `weighted_sum`: sum_t w_t tau_t (linear averaging: w_t = 1/T; task arithmetic,
  Ilharco et al. 2023: w_t = lambda for every task); `summed` over every parameter.
- `concatenated`: a weighted sum of LoRAs kept exactly as one LoRA of the summed rank.
- `compact`: sparse updates as (indices, values).

A method's own maths lives in its folder: TIES in posthoc/ties/ties.py, LoRA-LEGO in
posthoc/lora-lego/lego.py, RMM in posthoc/rmm/rmm.py.
"""

from __future__ import annotations

import torch


def weighted_sum(updates: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """sum_t w_t tau_t."""
    out = torch.zeros_like(updates[0], dtype=torch.float32)
    for update, weight in zip(updates, weights, strict=True):
        out += weight * update.float()
    return out


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
