"""Maestro: every target linear becomes a trainable low-rank decomposition trained with
ordered dropout, a hierarchical group-lasso penalty and progressive shrinking
(SamuelHorvath/Maestro-LoD@0003014, maestro/layers/linear.py, maestro/layers/utils.py,
maestro/samplers/independent.py, cifar_mnist_main.py).

- Init (decompose_linear): W = U S V^T (reduced SVD); the layer's out factor is
  U sqrt(S) (d_out x k), its in factor sqrt(S) V^T (k x d_in), k = min(d_in, d_out), W's
  bias on the out factor; so the model is unchanged at init. Both factors train.
- Ordered dropout: each training forward, every layer draws p = randint(1, width) /
  width (the IndependentSampler, numpy's generator) and uses the first ceil(k p) of
  its kept inner components; evaluation uses all kept components.
- Loss: task + gp_lambda * sum over layers of the hierarchical group lasso
  sqrt(sum_{j>=i} ||in_j||^2) + sqrt(sum_{j>=i} ||out_j||^2) (the reference's
  training always uses hierarchical=True).
- Progressive shrinking every `shrink_every` steps (the reference: every epoch): keep
  component i iff its hierarchical in-norm times out-norm >= threshold; the sampler's
  widths follow. At the end the dropped components are pruned, so the row's trainable
  count is the trained rank's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    TargetedParams,
    load_state_strict,
    trainable_state,
    wrap_targets,
)
from suite.methods.api import Method, PrepareContext, Prepared, StepHooks
from suite.models.storage import module_bytes


class MaestroParams(TargetedParams):
    gp_lambda: NonNegativeFloat = 1e-6
    threshold: NonNegativeFloat = 1e-5
    shrink_every: PositiveInt = 100
    sampler: Literal["across_layers", "none"] = "across_layers"
    prune_at_end: bool = True


class MaestroLinear(nn.Module):
    """x -> out(in(x)) through the first `rank` kept inner components."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        root = s.reshape(1, -1).sqrt()
        dtype, device = linear.weight.dtype, linear.weight.device
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.in_weight = nn.Parameter((vh.T * root).T.contiguous().to(dtype))
        self.out_weight = nn.Parameter((u * root).contiguous().to(dtype))
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.register_buffer("keep", torch.ones(s.numel(), dtype=torch.bool, device=device))
        self.p: float | None = None  # the sampled share of the width, or None: all kept

    @property
    def width(self) -> int:
        return int(self.keep.sum())

    def rank(self) -> int:
        return self.width if not self.p else int(np.ceil(self.width * self.p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rank()
        w_in = self.in_weight[self.keep][:r]
        w_out = self.out_weight[:, self.keep][:, :r]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if r == 0:
            zeros = torch.zeros(self.out_features, dtype=x.dtype, device=x.device)
            return (zeros if bias is None else bias).expand(*x.shape[:-1], -1).clone()
        return F.linear(F.linear(x, w_in.to(x.dtype)), w_out.to(x.dtype), bias)

    def hierarchical_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per component i: sqrt(sum_{j>=i} ||in_j||^2), sqrt(sum_{j>=i} ||out_j||^2)."""
        tail_in = self.in_weight.float().pow(2).flip(0).cumsum(0).flip(0).sum(1).sqrt()
        tail_out = self.out_weight.float().pow(2).flip(1).cumsum(1).flip(1).sum(0).sqrt()
        return tail_in, tail_out

    def group_lasso(self) -> torch.Tensor:
        tail_in, tail_out = self.hierarchical_norms()
        return (tail_in + tail_out).sum()

    @torch.no_grad()
    def shrink(self, threshold: float) -> None:
        tail_in, tail_out = self.hierarchical_norms()
        self.keep.copy_(tail_in * tail_out >= threshold)

    @torch.no_grad()
    def prune(self) -> None:
        """Drop the components shrinking removed (so they stop counting as trained)."""
        keep = self.keep.clone()
        self.in_weight = nn.Parameter(self.in_weight[keep].clone())
        self.out_weight = nn.Parameter(self.out_weight[:, keep].clone())
        self.keep = torch.ones(int(keep.sum()), dtype=torch.bool, device=keep.device)

    def weight(self) -> torch.Tensor:
        return self.out_weight[:, self.keep] @ self.in_weight[self.keep]


class _Maestro(StepHooks):
    """Samples each layer's width before a training forward; penalty; shrinking."""

    def __init__(self, model: nn.Module, layers: list[MaestroLinear], p: MaestroParams, seed: int):
        self.model, self.layers, self.p = model, layers, p
        self.rng = np.random.RandomState(seed)
        model.backbone.register_forward_pre_hook(self._sample)

    def _sample(self, _module, _args) -> None:
        for layer in self.layers:
            on = self.model.training and self.p.sampler == "across_layers"
            layer.p = draw_share(self.rng, layer.width) if on else None

    def extra_loss(self) -> torch.Tensor | None:
        if not self.p.gp_lambda:
            return None
        return self.p.gp_lambda * torch.stack([m.group_lasso() for m in self.layers]).sum()

    def after_optimizer_step(self, step: int) -> None:
        if step > 0 and step % self.p.shrink_every == 0:
            for layer in self.layers:
                layer.shrink(self.p.threshold)

    def on_train_end(self) -> None:
        for layer in self.layers:
            layer.p = None
            if self.p.prune_at_end:
                layer.prune()


def draw_share(rng: np.random.RandomState, width: int) -> float:
    """The IndependentSampler's draw: randint(1, width + 1) / width."""
    return rng.randint(1, width + 1) / width


class Maestro(Method):
    Params = MaestroParams

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_targets(model, patterns, lambda _, linear: MaestroLinear(linear))
        layers = [m for _, m in wrapped]
        return Prepared(
            model=model,
            hooks=_Maestro(model, layers, self.params, ctx.seed),
            adapter_state=lambda: trainable_state(model),
            load_adapter_state=lambda state: load_state_strict(model, state),
            base_bytes=lambda: module_bytes(model.backbone),
        )

    def expected_trainable_params(self, shapes) -> int:
        """Both factors at full inner width k = min(d_in, d_out) plus W's bias (before
        any shrinking); the bias is counted as the tiny models' linears have one."""
        return sum(min(d_in, d_out) * (d_in + d_out) + d_out for d_out, d_in in shapes)
