"""LQ-LoRA: W ~ Q + L1 L2, by alternating quantisation and SVD; L1, L2 train, Q stays
frozen (stored in NF4).

Algorithm (arXiv 2311.12023 section 3.1, as HanGuo97/lq-lora's
lowrank_quantized_sparse_decomposition runs it): Q = 0; repeat: L1 L2 = the rank-r SVD
of W - Q (L1 = U sqrt(S), L2 = sqrt(S) V^T), Q = quantize(W - L1 L2), error
||W - (L1 L2 + Q)||_F; stop when the error grows (keeping that iteration's factors, as
the reference does) or after `iterations`. The data-aware variant weights the SVD by the
empirical Fisher F (sum over single examples of squared gradients of W): the two-sided
heuristic factorises diag(r) (W - Q) diag(c) with r, c the square roots of F's row and
column means, and divides them back out; the error is ||sqrt(F) * (W - W')||_F. The
adapter is PEFT's LoRA with A = L2 / sqrt(s), B = L1 / sqrt(s), s = alpha / r, so
W' = Q + s B A at initialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, TargetedParams, adapter_prepared, wrap_targets
from suite.methods.api import Method, PrepareContext, Prepared
from suite.methods.targets import find_targets
from suite.models.storage import CODECS, StoredLinear, StoredWeight


class LQLoRAParams(TargetedParams):
    rank_fields = ("r",)
    targets: str | list[str] = "all-linear"
    r: PositiveInt = 8
    alpha: PositiveFloat = 16
    # The quantiser of Q: torchao's NF4 with double quantisation (QLoRA's), the reference's
    # 4-bit NF configuration (num_bits 4, num_bits_0 8, block sizes 64 and 256).
    storage: Literal["nf4", "int8", "fp8"] = "nf4"
    iterations: PositiveInt = 100
    svd: Literal["randomized", "exact"] = "randomized"
    oversampling: NonNegativeInt = 10
    # The data-aware variant: single training examples for the empirical Fisher (0: off).
    fisher_examples: NonNegativeInt = Field(default=0, le=4096)


def svd_factors(
    a: torch.Tensor, rank: int, randomized: bool, oversampling: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 = U_r sqrt(S_r), L2 = sqrt(S_r) V_r^T of `a` (the randomised SVD oversamples)."""
    if randomized:
        u, s, v = torch.svd_lowrank(a, q=min(rank + oversampling, *a.shape))
        vt = v.mH
    else:
        u, s, vt = torch.linalg.svd(a, full_matrices=False)
    root = torch.sqrt(s)
    return (u * root[None, :])[:, :rank], (vt * root[:, None])[:rank, :]


def weighted_svd_factors(a, fisher, rank, randomized, oversampling):
    """The two-sided heuristic: factorise r * a * c with r, c the square roots of the
    Fisher's row and column means, then divide them back out."""
    rows = torch.sqrt(fisher.mean(dim=1, keepdim=True))
    cols = torch.sqrt(fisher.mean(dim=0, keepdim=True))
    l1, l2 = svd_factors(rows * a * cols, rank, randomized, oversampling)
    return l1 / rows, l2 / cols


@dataclass(frozen=True)
class Decomposition:
    """weight ~ q + l1 @ l2; `encoded` is q's quantised form, `errors` the error after each
    iteration that ran."""

    l1: torch.Tensor
    l2: torch.Tensor
    q: torch.Tensor
    encoded: Any
    errors: tuple[float, ...]

    @property
    def iterations(self) -> int:
        return len(self.errors)


def decompose(
    weight: torch.Tensor,
    rank: int,
    quantize,
    iterations: int = 100,
    randomized: bool = True,
    oversampling: int = 10,
    fisher: torch.Tensor | None = None,
    stop_early: bool = True,
) -> Decomposition:
    """Alternate SVD and quantisation; `quantize(x)` returns (dequantised x, its encoding).

    With `stop_early` (the reference's rule) the loop ends at the first iteration whose
    error exceeds the previous one. Near convergence the error moves by round-off, so
    where that happens depends on the LAPACK build and thread count; `stop_early=False`
    runs exactly `iterations` (a golden test replays the count the reference ran)."""
    a = weight.detach().float()
    q = torch.zeros_like(a)
    errors: list[float] = []
    for _ in range(iterations):
        if fisher is None:
            l1, l2 = svd_factors(a - q, rank, randomized, oversampling)
        else:
            l1, l2 = weighted_svd_factors(a - q, fisher, rank, randomized, oversampling)
        q, encoded = quantize(a - l1 @ l2)
        residual = a - (l1 @ l2 + q)
        if fisher is not None:
            residual = torch.sqrt(fisher) * residual
        errors.append(float(torch.linalg.norm(residual, ord="fro")))
        if stop_early and len(errors) > 1 and errors[-1] > errors[-2]:
            break  # the reference keeps this iteration's factors
    return Decomposition(l1, l2, q, encoded, tuple(errors))


class LQLoRALinear(AdapterLinear):
    """y = Q x + s B A x, Q the quantised residual of W after removing L1 L2."""

    def __init__(
        self,
        base: nn.Linear,
        p: LQLoRAParams,
        fisher: torch.Tensor | None = None,
        decomposition: Decomposition | None = None,
    ):
        """`decomposition`: a given one (made with `p.storage`'s codec) instead of running
        `decompose` on the base weight."""
        codec = CODECS[p.storage]()

        def quantize(x: torch.Tensor):
            encoded = codec.encode(x)
            return codec.decode(*encoded, x.shape).float(), encoded

        if decomposition is None:
            randomized = p.svd == "randomized"
            decomposition = decompose(
                base.weight, p.r, quantize, p.iterations, randomized, p.oversampling, fisher
            )
        l1, l2, encoded = decomposition.l1, decomposition.l2, decomposition.encoded
        self.iterations = decomposition.iterations
        stored = StoredWeight(base.weight, codec, encoded=encoded)
        super().__init__(StoredLinear(base, codec, stored))
        self.r, self.scaling = p.r, p.alpha / p.r
        dtype, device = base.weight.dtype, base.weight.device
        root = math.sqrt(self.scaling)
        self.lora_A = nn.Linear(base.in_features, p.r, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(p.r, base.out_features, bias=False, dtype=dtype, device=device)
        with torch.no_grad():
            self.lora_A.weight.copy_(l2 / root)
            self.lora_B.weight.copy_(l1 / root)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(x)) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def merged_weight(self) -> torch.Tensor:
        # Q in the adapter's precision plus s B A: the merge leaves the outputs as they are.
        delta = self.delta_weight()
        return self.base.weight.to(delta.dtype) + delta


def empirical_fisher(model: nn.Module, ctx: PrepareContext, patterns, n_examples: int) -> dict:
    """Sum over `n_examples` single training examples of each target weight's squared
    gradient of the task loss (the reference's compute_empirical_Fisher)."""
    if ctx.train_batches is None or ctx.loss_fn is None:
        raise ValueError("lq-lora's fisher_examples needs training batches and a loss")
    targets = find_targets(model.backbone, patterns)
    fisher = {name: torch.zeros(lin.weight.shape) for name, lin in targets}
    for _, lin in targets:
        lin.weight.requires_grad_(True)
    seen = 0
    for batch in ctx.train_batches():
        for i in range(len(batch["labels"])):
            if seen == n_examples:
                break
            model.zero_grad(set_to_none=True)
            ctx.loss_fn(model, {k: v[i : i + 1] for k, v in batch.items()}).backward()
            for name, lin in targets:
                fisher[name] += lin.weight.grad.detach().float().pow(2).cpu()
            seen += 1
        if seen == n_examples:
            break
    for _, lin in targets:
        lin.weight.requires_grad_(False)
        lin.weight.grad = None
    model.zero_grad(set_to_none=True)
    return fisher


class LQLoRA(Method):
    Params = LQLoRAParams

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        fisher = (
            empirical_fisher(model, ctx, patterns, p.fisher_examples) if p.fisher_examples else {}
        )
        # The randomised SVD draws from the global RNG: seed it from the cell, leave it as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            wrap_targets(
                model,
                patterns,
                lambda name, linear: LQLoRALinear(linear, p, fisher.get(name)),
            )
        return adapter_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
