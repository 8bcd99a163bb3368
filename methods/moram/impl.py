"""Little by Little (MoRAM; MoRA in the paper's first versions): a LoRA read as r rank-1
experts that route themselves, and a frozen pool of every earlier task's experts
(Artificer-AI-Lab/MoRAM@aaa51d8: XTAIL/loralib/moram.py, XTAIL/models/moram.py).

- Layer (MoRAM_Linear.forward): with A_all = [A_old; A] and B_all = [B_old, B] (the
  current task's A (r x d_in) Kaiming-uniform, B zeros; no scale), the rank activations
  z = dropout(x) A_all^T score themselves: s = z / ||z||_2 (over the ranks, per token),
  the top k scores (k = max(top_k, 2), top_k defaulting to r) enter softmax(s / temp),
  the rest get weight 0; in evaluation a rank whose s is below `threshold` is switched
  off as well (its weight zeroed, the others not renormalised). y = W x + (z * w) B_all^T.
  B = 0 at init, so the model is unchanged at init.
- Task boundary (increment_task): A and B join the frozen pool; a fresh A, B of rank r
  train on the next task. Every earlier expert stays in the mixture, frozen.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    AdapterLinear,
    TargetedParams,
    TaskBoundaryHooks,
    adapter_prepared,
    wrap_targets,
)
from suite.methods.api import Method, Prepared


class MoRAMParams(TargetedParams):
    rank_fields = ("r",)
    r: PositiveInt = 16
    top_k: PositiveInt | None = None  # None: r (the authors' runner sets topk=$rank)
    temp: PositiveFloat = 0.01
    threshold: NonNegativeFloat = 0.2  # runner_moram.sh's --prune_thre
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)


class MoRAMLinear(AdapterLinear):
    """A self-routed mixture of rank-1 experts: the current task's r plus a frozen pool."""

    def __init__(self, base: nn.Linear, p: MoRAMParams):
        super().__init__(base)
        self.r, self.temp, self.threshold = p.r, p.temp, p.threshold
        self.top_k = p.top_k or p.r
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        kw = {"dtype": base.weight.dtype, "device": base.weight.device}
        # The frozen pool: buffers, so they travel with the model but never train.
        self.register_buffer("old_A", torch.zeros(0, self.in_features, **kw))
        self.register_buffer("old_B", torch.zeros(self.out_features, 0, **kw))
        self._fresh(base.weight)

    def _fresh(self, like: torch.Tensor) -> None:
        kw = {"dtype": like.dtype, "device": like.device}
        self.lora_A = nn.Parameter(torch.empty(self.r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.r, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @property
    def experts(self) -> int:
        return self.old_A.shape[0] + self.r

    def mixture_weights(self, z: torch.Tensor) -> torch.Tensor:
        """The experts' weights for activations z (..., experts)."""
        scores = F.normalize(z, p=2, dim=-1)
        k = min(max(self.top_k, 2), z.shape[-1])
        top, index = torch.topk(scores, k=k, dim=-1)
        logits = torch.full_like(scores, float("-inf")).scatter(-1, index, top)
        weights = F.softmax(logits / self.temp, dim=-1)
        if not self.training and self.threshold > 0:
            weights = weights * (scores >= self.threshold).to(weights.dtype)
        return weights

    def update(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.cat([self.old_A.to(self.lora_A.dtype), self.lora_A])
        b = torch.cat([self.old_B.to(self.lora_B.dtype), self.lora_B], dim=1)
        z = self.dropout(x) @ a.T
        return (z * self.mixture_weights(z)) @ b.T

    @torch.no_grad()
    def next_task(self) -> None:
        """increment_task: the current experts join the frozen pool; fresh ones train."""
        # The pool takes the trained factors' dtype (fp32 on a bf16 base, as the engine
        # keeps adapters), so freezing them loses nothing.
        a, b = self.lora_A.detach(), self.lora_B.detach()
        self.old_A = torch.cat([self.old_A.to(a.dtype), a])
        self.old_B = torch.cat([self.old_B.to(b.dtype), b], dim=1)
        self._fresh(self.lora_A)


class MoRAM(Method):
    Params = MoRAMParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_targets(model, patterns, lambda _, lin: MoRAMLinear(lin, self.params))
        # Input-dependent weights: the update is no fixed matrix, so it does not merge.
        return adapter_prepared(model, TaskBoundaryHooks([m for _, m in wrapped]), mergeable=False)

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
