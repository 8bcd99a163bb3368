"""CoDyRA: LoRA whose ranks are switched by a sparse gate, merged into W at every task
boundary (Artificer-AI-Lab/CoDyRA@c1691e4: loralib/codyra.py, models/codyra.py).

- Layer (codyra_Linear): y = W x + ((dropout(x) A^T) * g) B^T, A (r x d_in)
  Kaiming-uniform (a = sqrt 5), B (d_out x r) zeros, g ~ N(0, 1) (1 x r), no scale
  (lora_scaling = 1). So the model is unchanged at init.
- Rank pruning (train_model): the first `dense_fraction` of the steps train densely;
  then the threshold climbs through linspace(0, max_kappa, lambda_num), one value every
  int((T - dense) // lambda_num) steps, and after every optimiser step past the dense
  phase SoRA's three-mask threshold step runs on every gate.
- Task boundary (increment_task): the gated update B diag(g) A is merged into W
  (zero-gate ranks add nothing), and a fresh A, B, g of the initial rank train on the
  next task. What earlier tasks learned sits in W; the next task's gate decides how many
  new ranks it opens.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field, NonNegativeFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    AdapterLinear,
    TargetedParams,
    TaskBoundaryHooks,
    adapter_prepared,
    wrap_targets,
)
from suite.methods.api import Method, Prepared
from suite.methods.gate_threshold import threshold_step


class CoDyRAParams(TargetedParams):
    rank_fields = ("r",)
    r: PositiveInt = 16
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    max_kappa: NonNegativeFloat = 5e-3  # runner_codyra.sh's MAX_KAPPA
    lambda_num: PositiveInt = 50
    dense_fraction: float = Field(default=0.5, ge=0.0, le=1.0)  # --dense_iters


class CoDyRALinear(AdapterLinear):
    """y = W0 x + ((dropout(x) A^T) * g) B^T; `next_task()` merges it into W0 and restarts."""

    def __init__(self, base: nn.Linear, p: CoDyRAParams):
        super().__init__(base)
        self.r = p.r
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        self.merged_tasks = 0
        self._fresh(base.weight)

    def _fresh(self, like: torch.Tensor) -> None:
        kw = {"dtype": like.dtype, "device": like.device}
        self.lora_A = nn.Parameter(torch.empty(self.r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.r, **kw))
        self.gate = nn.Parameter(torch.randn(self.r, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def active_ranks(self) -> int:
        return int((self.gate != 0).sum())

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.dropout(x) @ self.lora_A.T) * self.gate) @ self.lora_B.T

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B * self.gate) @ self.lora_A

    @torch.no_grad()
    def next_task(self) -> None:
        """increment_task: merge B diag(g) A into the frozen weight for good, then a fresh
        A, B, g (initialised as at the start) for the next task."""
        self.merge()
        del self._unmerged_weight  # the merge is permanent
        self.merged = False
        self.merged_tasks += 1
        self._fresh(self.lora_A)


def threshold_schedule(step: int, total: int, p: CoDyRAParams) -> tuple[bool, float]:
    """(prune after this step?, the threshold then) at 0-based `step` of `total`, as
    train_model's loop sets them: the threshold index starts at 0 and goes up by one at
    every step t >= dense with t % every == 0 (capped at lambda_num - 1); the threshold
    step runs after each step t > dense."""
    dense = p.dense_fraction * total
    every = int((total - dense) // p.lambda_num)
    index = 0
    if every > 0 and step >= dense:
        first = math.ceil(dense)
        index = step // every - (first - 1) // every
    lambdas = np.linspace(0, p.max_kappa, p.lambda_num)
    return step > dense, float(lambdas[min(p.lambda_num - 1, index)])


class CoDyRAHooks(TaskBoundaryHooks):
    def __init__(self, layers: list[CoDyRALinear], p: CoDyRAParams):
        super().__init__(layers)
        self.p, self.total = p, 1

    def on_train_start(self, total_steps: int) -> None:
        self.total = max(total_steps, 1)

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        prune, lam = threshold_schedule(step, self.total, self.p)
        if prune:
            for m in self.layers:
                threshold_step(m.gate, lam)


class CoDyRA(Method):
    Params = CoDyRAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_targets(model, patterns, lambda _, lin: CoDyRALinear(lin, self.params))
        return adapter_prepared(model, CoDyRAHooks([m for _, m in wrapped], self.params))

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out + 1) for d_out, d_in in shapes)
