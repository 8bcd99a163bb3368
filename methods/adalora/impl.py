"""AdaLoRA, faithful to Hugging Face PEFT 0.21 (`tuners/adalora`): SVD-form update,
orthogonality penalty, sensitivity-with-uncertainty importance and a cubic rank budget.

Rank changes are masks on the singular values (lambda), as in PEFT: the tensors keep
their initial shape, so the trainable parameter count is init_r (d_in + d_out + 1) per
target, which is PEFT's count.
"""

from __future__ import annotations

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from suite.methods.adapters import TargetedParams, adapter_prepared, wrap_targets
from suite.methods.api import Method, Prepared, StepHooks, at_most
from suite.methods.svd_adapters import SensitivityEMA, SVDLinear, orthogonality_penalty, to_steps


class AdaLoRAParams(TargetedParams):
    rank_fields = ("init_r",)
    init_r: PositiveInt = 12
    target_r: PositiveInt = 8
    alpha: PositiveFloat = 8
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    # Steps if >= 1, else a fraction of the run's steps (PEFT takes steps only).
    tinit: NonNegativeFloat = 0.1
    tfinal: NonNegativeFloat = 0.3
    deltaT: PositiveInt = 10
    beta1: float = Field(default=0.85, gt=0.0, lt=1.0)
    beta2: float = Field(default=0.85, gt=0.0, lt=1.0)
    orth_reg_weight: NonNegativeFloat = 0.5

    _target_within_init = at_most("target_r", "init_r")


class RankAllocator(StepHooks):
    """PEFT's `RankAllocator` plus `AdaLoraModel.update_and_allocate`, as step hooks.

    Called after each optimiser step, while the gradients are still there (PEFT's
    documented call site: after `optimizer.step()`, before `zero_grad()`).
    """

    def __init__(self, modules: list[SVDLinear], p: AdaLoRAParams):
        self.modules, self.p = modules, p
        self.ema = SensitivityEMA(p.beta1, p.beta2)
        self.init_bgt = sum(m.rank for m in modules)
        self.target_bgt = p.target_r * len(modules)
        self.rank_pattern: list[torch.Tensor] | None = None
        self.total = self.tinit = self.tfinal = 0

    def on_train_start(self, total_steps: int) -> None:
        self.total = total_steps
        self.tinit = to_steps(self.p.tinit, total_steps)
        self.tfinal = to_steps(self.p.tfinal, total_steps)
        if self.tinit >= self.total - self.tfinal:
            raise ValueError(
                f"AdaLoRA schedule leaves no budgeting phase: tinit={self.tinit}, "
                f"tfinal={self.tfinal}, total steps={self.total}"
            )

    def extra_loss(self) -> torch.Tensor | None:
        if self.p.orth_reg_weight == 0:
            return None
        return self.p.orth_reg_weight * orthogonality_penalty(self.modules)

    def after_optimizer_step(self, step: int) -> None:
        final = self.total - self.tfinal
        if step < final:
            self.update_ipt()
            budget, mask_now = self.budget_schedule(step)
            if mask_now:
                self.rank_pattern = self.mask_to_budget(budget)
        elif step == final:
            budget, _ = self.budget_schedule(step)
            self.rank_pattern = self.mask_to_budget(budget)
            self.ema.reset()
        elif self.rank_pattern is not None:
            self.mask_using_rank_pattern()

    def budget_schedule(self, step: int) -> tuple[int, bool]:
        """(total rank budget, whether to mask now): constant, cubic decay, then target."""
        if step <= self.tinit:
            return self.init_bgt, False
        if step > self.total - self.tfinal:
            return self.target_bgt, True
        span = self.total - self.tfinal - self.tinit
        mul = 1 - (step - self.tinit) / span
        budget = int((self.init_bgt - self.target_bgt) * mul**3 + self.target_bgt)
        return budget, step % self.p.deltaT == 0

    @torch.no_grad()
    def update_ipt(self) -> None:
        """EMA of |theta * grad| for every entry of P, lambda and Q."""
        for m in self.modules:
            for p in (m.lora_A[0], m.lora_E[0], m.lora_B[0]):
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                self.ema.update(p, (p * grad).abs())

    def triplet_scores(self, m: SVDLinear) -> torch.Tensor:
        """S_i = s(lambda_i) + mean_j s(Q_ij) + mean_j s(P_ji) (PEFT `_combine_ipt`)."""
        a, e, b = m.lora_A[0], m.lora_E[0], m.lora_B[0]
        vec = self.ema.score(a).mean(dim=1) + self.ema.score(b).mean(dim=0)
        return self.ema.score(e).view(-1) + vec

    @torch.no_grad()
    def mask_to_budget(self, budget: int) -> list[torch.Tensor]:
        """Zero the (init_bgt - budget) lowest-scoring singular values, globally."""
        scores = [self.triplet_scores(m) for m in self.modules]
        k = self.init_bgt - budget
        if k <= 0:
            return [torch.ones_like(s, dtype=torch.bool) for s in scores]
        threshold = torch.kthvalue(torch.cat(scores), k=k).values.item()
        pattern = []
        for m, s in zip(self.modules, scores, strict=True):
            keep = s > threshold
            m.lora_E[0].masked_fill_(~keep.view(-1, 1), 0.0)
            pattern.append(keep)
        return pattern

    @torch.no_grad()
    def mask_using_rank_pattern(self) -> None:
        for m, keep in zip(self.modules, self.rank_pattern, strict=True):
            m.lora_E[0].masked_fill_(~keep.view(-1, 1), 0.0)


class AdaLoRA(Method):
    Params = AdaLoRAParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        wrapped = wrap_targets(
            model, patterns, lambda name, lin: SVDLinear(lin, p.init_r, p.alpha, p.dropout)
        )
        hooks = RankAllocator([m for _, m in wrapped], p)
        return adapter_prepared(model, hooks)

    def expected_trainable_params(self, shapes) -> int:
        # Q (r x d_in), lambda (r), P (d_out x r): PEFT's AdaLoraConfig count.
        return sum(self.params.init_r * (d_in + d_out + 1) for d_out, d_in in shapes)
