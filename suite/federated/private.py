"""Client-side DP-SGD (Abadi et al. 2016, arXiv 1607.00133) as Opacus runs it for the
FedSVD authors' clients (seanie12/fed-svd@36650e2 fedmm/fedavg/client.py dp_train:
PrivacyEngine.make_private with `noise_multiplier` and `max_grad_norm`).

Each step: every example's gradient of the trainable tensors (all of them together, as
Opacus's flat clipping) is clipped to L2 norm C by the factor min(1, C / (norm + 1e-6)),
the clipped gradients are summed, Gaussian noise N(0, (z C)^2) is added to every
coordinate, and the sum is divided by the batch size; then the method's optimiser steps.
Per-example gradients come from one backward per example (slow, exact; the batches here
are small). Methods with training hooks are not supported (their hooks would not run).
Opacus samples batches by Poisson sampling; these are the cell's shuffled batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from suite.methods.api import Prepared
from suite.specs.federated import PrivacySpec
from suite.train.loop import LoopConfig, make_optimizer


def _example(batch: dict, i: int, n: int) -> dict:
    return {
        k: v[i : i + 1] if torch.is_tensor(v) and v.shape[:1] == (n,) else v
        for k, v in batch.items()
    }


def clipped_sum(grads: list[list[torch.Tensor]], max_norm: float) -> list[torch.Tensor]:
    """The sum over examples of each example's gradients scaled to L2 norm <= max_norm."""
    out = [torch.zeros_like(g) for g in grads[0]]
    for example in grads:
        norm = torch.sqrt(sum(g.double().pow(2).sum() for g in example))
        factor = min(1.0, max_norm / (float(norm) + 1e-6))
        for acc, g in zip(out, example, strict=True):
            acc.add_(g, alpha=factor)
    return out


def private_train(
    prepared: Prepared,
    batches: Iterator[dict],
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    cfg: LoopConfig,
    dp: PrivacySpec,
    seed: int,
) -> list[float]:
    """`cfg.steps` DP-SGD steps of the prepared model's trainable tensors; the losses."""
    model = prepared.model
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = make_optimizer(prepared, named, cfg.lr, cfg.weight_decay)
    noise = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(cfg.steps):
        batch = next(batches)
        n = int(batch["labels"].shape[0])
        grads, total = [], 0.0
        for i in range(n):
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model, _example(batch, i, n))
            loss.backward()
            total += float(loss.detach())
            grads.append(
                [
                    p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                    for p in params
                ]
            )
        summed = clipped_sum(grads, dp.max_grad_norm)
        std = dp.noise_multiplier * dp.max_grad_norm
        for p, s in zip(params, summed, strict=True):
            z = torch.normal(0.0, std, size=p.shape, generator=noise) if std else 0.0
            p.grad = ((s.cpu() + z) / n).to(s)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total / n)
    return losses
