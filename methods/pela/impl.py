"""PELA: the pretrained model's linears replaced by their low-rank approximations, then
fine-tuned with feature distillation from the original model and a weight
regulariser (guoyang9/PELA, ALBEF/models/low_rank.py and ALBEF/Pretrain.py).

- Each target W (d_out x d_in) becomes two linears: rank k = floor(d_in d_out /
  (ratio (d_in + d_out))); with U S V^T the SVD of W^T, the first (d_in -> k) has weight
  (U_k sqrt(S_k))^T, the second (k -> d_out) sqrt(S_k) V_k^T transposed, with W's bias.
- Loss: task + kd_weight * mean over layers of MSE(student hidden state, original
  model's hidden state) + norm_weight * mean over replaced layers of
  (max |W2 W1 - W| - eps)^2 (the reference's inf_norm, eps 1e-3).
- What trains: the whole low-rank model (the reference optimises every parameter of the
  student), or only the factors (`train: factors`).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveFloat
from torch import nn

from suite.methods.adapters import TargetedParams, load_state_strict, trainable_state
from suite.methods.api import Method, PrepareContext, Prepared, StepHooks
from suite.methods.targets import find_targets, replace_module
from suite.models.storage import module_bytes

LAYER_SUFFIXES = ("layer", "layers", "h", "blocks")


class PELAParams(TargetedParams):
    targets: str | list[str] = "all-linear"
    ratio: PositiveFloat = 3.0
    kd_weight: NonNegativeFloat = 0.1
    norm_weight: NonNegativeFloat = 1.0
    eps: float = Field(default=1e-3, ge=0.0)
    train: Literal["all", "factors"] = "all"


def pela_rank(d_in: int, d_out: int, ratio: float) -> int:
    return max(1, int(math.floor((d_in * d_out) / (ratio * (d_in + d_out)))))


def low_rank_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) weights with second @ first ~ weight, from the SVD of W^T with
    the singular values split evenly (numpy's full SVD, as the reference)."""
    u, s, vh = np.linalg.svd(weight.detach().float().t().cpu().numpy(), full_matrices=True)
    root = np.sqrt(np.diag(s[:rank]))
    first = torch.from_numpy(u[:, :rank] @ root).t().contiguous()  # k x d_in
    second = torch.from_numpy(root @ vh[:rank, :]).t().contiguous()  # d_out x k
    return first, second


class LowRankLinear(nn.Module):
    """x -> second(first(x)): the low-rank replacement of a linear."""

    def __init__(self, linear: nn.Linear, rank: int):
        super().__init__()
        w = linear.weight
        first, second = low_rank_factors(w, rank)
        dtype, device = w.dtype, w.device
        self.first = nn.Linear(linear.in_features, rank, bias=False, dtype=dtype, device=device)
        self.second = nn.Linear(
            rank, linear.out_features, bias=linear.bias is not None, dtype=dtype, device=device
        )
        with torch.no_grad():
            self.first.weight.copy_(first)
            self.second.weight.copy_(second)
            if linear.bias is not None:
                self.second.bias.copy_(linear.bias.detach())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.first.weight.dtype
        return self.second(self.first(x.to(dtype))).to(x.dtype)

    def weight(self) -> torch.Tensor:
        return self.second.weight @ self.first.weight


def inf_norm_penalty(pairs, eps: float) -> torch.Tensor:
    """Mean over (student layer, original weight) of (max |W2 W1 - W| - eps)^2."""
    terms = [
        F.mse_loss(torch.norm(layer.weight() - w.to(layer.first.weight.dtype), float("inf")),
                   torch.tensor(eps, device=w.device))
        for layer, w in pairs
    ]  # fmt: skip
    return torch.stack(terms).mean()


def _layer_modules(backbone: nn.Module) -> list[nn.Module]:
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in LAYER_SUFFIXES:
            return list(module)
    raise ValueError("pela found no list of transformer layers to distil")


class _Capture:
    """Keeps the outputs of a model's layers while `active()` says so."""

    def __init__(self, layers: list[nn.Module], active):
        self.outputs: list[torch.Tensor] = []
        self.active = active
        for layer in layers:
            layer.register_forward_hook(self._keep)

    def _keep(self, _module, _inputs, output) -> None:
        if self.active():
            self.outputs.append(output[0] if isinstance(output, tuple) else output)


class _Distil(StepHooks):
    """The feature-distillation and weight-regularisation terms of PELA's loss."""

    def __init__(self, model, teacher, pairs, p: PELAParams):
        self.model, self.teacher, self.pairs, self.p = model, teacher, pairs, p
        self.kwargs: dict = {}
        self.student = _Capture(_layer_modules(model.backbone), lambda: model.training)
        self.teacher_out = _Capture(_layer_modules(teacher), lambda: True)
        model.backbone.register_forward_pre_hook(self._inputs, with_kwargs=True)

    def _inputs(self, _module, args, kwargs):
        if self.model.training:
            self.kwargs = dict(kwargs)
            self.student.outputs = []

    def extra_loss(self) -> torch.Tensor | None:
        total = None
        if self.p.kd_weight and self.kwargs:
            self.teacher_out.outputs = []
            with torch.no_grad():
                self.teacher(**self.kwargs)
            pairs = zip(self.student.outputs, self.teacher_out.outputs, strict=True)
            kd = torch.stack([F.mse_loss(s.float(), t.float()) for s, t in pairs]).mean()
            total = self.p.kd_weight * kd
        if self.p.norm_weight:
            norm = self.p.norm_weight * inf_norm_penalty(self.pairs, self.p.eps)
            total = norm if total is None else total + norm.to(total.dtype)
        return total


class PELA(Method):
    Params = PELAParams

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        p = self.params
        teacher = copy.deepcopy(model.backbone).eval()
        teacher.requires_grad_(False)
        teacher_mods = dict(teacher.named_modules())
        pairs = []
        for name, linear in find_targets(model.backbone, ctx.preset.resolve_targets(p.targets)):
            rank = pela_rank(linear.in_features, linear.out_features, p.ratio)
            layer = LowRankLinear(linear, rank)
            replace_module(model.backbone, name, layer)
            if p.train == "factors" and layer.second.bias is not None:
                layer.second.bias.requires_grad_(False)
            pairs.append((layer, teacher_mods[name].weight.detach()))
        if p.train == "all":
            model.backbone.requires_grad_(True)
        return Prepared(
            model=model,
            hooks=_Distil(model, teacher, pairs, p),
            adapter_state=lambda: trainable_state(model),
            load_adapter_state=lambda state: load_state_strict(model, state),
            base_bytes=lambda: module_bytes(model.backbone),
        )

    def expected_trainable_params(self, shapes) -> int:
        """The factors of each target (with train: factors; biases are the base's)."""
        return sum(
            pela_rank(d_in, d_out, self.params.ratio) * (d_in + d_out) for d_out, d_in in shapes
        )
