"""SST, Sparse Spectral Training (reconstructed from a detailed third-party summary).

Each targeted linear becomes W = U diag(sigma) V^T from the SVD of the layer's own random
init (k = min(d_out, d_in) singular triplets; the dense weight is dropped). Every step
all k singular values train (clamped at 0 after the step); r singular-vector pairs,
sampled per layer with probability (1/k + sigma_i / sum sigma) / 2, train as well, with
the "enhanced" gradients dL/dW V_i and dL/dW^T U_i (the true gradients divided by
sigma_i) and renormalised to unit length after each step. Every `interval` steps (an
iteration) the trained pairs are written back, a new set is sampled and their optimiser
state starts afresh; after a round of ceil(k / r) iterations U diag(sigma) V^T is
re-decomposed by SVD, restoring orthogonality.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import PositiveInt
from torch import nn

from suite.methods.api import MethodParams, StepHooks
from suite.methods.pretrain import ReplacedLinear, ReplacingMethod

# Below this a singular value is treated as zero: its vectors keep the true gradient
# (which is then ~0) instead of an enhanced one divided by ~0.
SIGMA_EPS = 1e-6


class SSTParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 64
    interval: PositiveInt = 200
    targets: str | list[str] = "all-linear"
    train_rest: bool = True


def sampling_probabilities(sigma: torch.Tensor) -> torch.Tensor:
    """p_i = (1/k + sigma_i / sum(sigma)) / 2: half uniform, half by magnitude."""
    s = sigma.detach().float().clamp(min=0)
    total = s.sum()
    share = s / total if total > 0 else torch.full_like(s, 1.0 / len(s))
    return 0.5 * (1.0 / len(s) + share)


class SSTLinear(ReplacedLinear):
    def __init__(self, linear: nn.Linear, p: SSTParams, gen: torch.Generator):
        super().__init__(linear)
        dtype = linear.weight.dtype
        u, s, vh = torch.linalg.svd(linear.weight.detach().float().cpu(), full_matrices=False)
        self.k, self.r = len(s), p.r
        self.register_buffer("U", u.to(dtype))
        self.register_buffer("V", vh.T.contiguous().to(dtype))
        self.sigma = nn.Parameter(s.to(dtype))
        self.register_buffer("active", self.sample(gen))
        self.U_active = nn.Parameter(self.U[:, self.active].clone())
        self.V_active = nn.Parameter(self.V[:, self.active].clone())
        self.to(linear.weight.device)

    def sample(self, gen: torch.Generator) -> torch.Tensor:
        probs = sampling_probabilities(self.sigma).cpu()
        return torch.multinomial(probs, self.r, replacement=False, generator=gen).sort().values

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """U and V with the trained pairs in place (differentiable in the active ones)."""
        u = self.U.index_copy(1, self.active, self.U_active.to(self.U.dtype))
        v = self.V.index_copy(1, self.active, self.V_active.to(self.V.dtype))
        return u, v

    def weight_matrix(self) -> torch.Tensor:
        u, v = self.factors()
        return (u * self.sigma.to(u.dtype)) @ v.T

    def project(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.factors()
        return F.linear(F.linear(x, v.T.to(x.dtype)) * self.sigma.to(x.dtype), u.to(x.dtype))

    @property
    def flop_weights(self) -> tuple[int, int]:
        n = self.k * (self.in_features + self.out_features)
        return n, n

    @torch.no_grad()
    def enhance_gradients(self) -> None:
        s = self.sigma.detach()[self.active].to(torch.float32)
        scale = torch.where(s > SIGMA_EPS, 1.0 / s.clamp(min=SIGMA_EPS), torch.ones_like(s))
        for p in (self.U_active, self.V_active):
            if p.grad is not None:
                p.grad.mul_(scale.to(p.grad.dtype))

    @torch.no_grad()
    def after_step(self) -> None:
        self.sigma.clamp_(min=0)
        for p in (self.U_active, self.V_active):
            p.div_(p.norm(dim=0, keepdim=True).clamp(min=1e-12))

    @torch.no_grad()
    def next_iteration(self, gen: torch.Generator, resvd: bool) -> None:
        """Write the trained pairs back, re-decompose if a round ended, sample anew."""
        self.U[:, self.active] = self.U_active.to(self.U.dtype)
        self.V[:, self.active] = self.V_active.to(self.V.dtype)
        if resvd:
            w = (self.U.float() * self.sigma.float()) @ self.V.float().T
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            self.U.copy_(u)
            self.V.copy_(vh.T)
            self.sigma.copy_(s)
        self.active.copy_(self.sample(gen).to(self.active.device))
        self.U_active.copy_(self.U[:, self.active])
        self.V_active.copy_(self.V[:, self.active])


class SSTHooks(StepHooks):
    def __init__(self, layers: list[SSTLinear], interval: int, gen: torch.Generator):
        self.layers, self.interval, self.gen = layers, interval, gen
        self.optimizer = None
        self.iteration = 0

    def bind_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer

    def after_backward(self, step: int) -> None:
        for layer in self.layers:
            layer.enhance_gradients()

    def after_optimizer_step(self, step: int) -> None:
        for layer in self.layers:
            layer.after_step()
        if (step + 1) % self.interval:
            return
        self.iteration += 1
        for layer in self.layers:
            resvd = self.iteration % math.ceil(layer.k / layer.r) == 0
            layer.next_iteration(self.gen, resvd)
            fresh = [layer.U_active, layer.V_active, *([layer.sigma] if resvd else [])]
            for p in fresh:  # new vectors (and, after an SVD, reordered values): no moments
                self.optimizer.state.pop(p, None)


class SST(ReplacingMethod):
    Params = SSTParams
    layer = SSTLinear
    seeded = True

    def hooks(self, layers, gen) -> SSTHooks:
        return SSTHooks(layers, self.params.interval, gen)

    def expected_trainable_params(self, shapes) -> int:
        r = self.params.r
        return sum(min(d_out, d_in) + r * (d_in + d_out) for d_out, d_in in shapes)
