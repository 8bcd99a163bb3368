"""IncreLoRA, following the official code (FeiyuZhang98/IncreLoRA, loralib/increlora.py).

Every target starts at rank r (1 in the paper) in AdaLoRA's SVD form. Each module's
importance is |dW * dL/d(dW)| summed over entries / sqrt(numel), smoothed into
sensitivity times uncertainty; every `incre_interval` steps after `init_warmup` the top_h
modules gain `incre_rank_num` ranks until the total reaches target_rank per module on
average. With advance learning a module always holds a reserve chunk whose P and Q train
ahead of time while its singular values stay frozen at 1e-5; activating it makes lambda
trainable and adds a new reserve. The tensors of each event (the reserves at step 0;
then each increase's activated singular values plus the new reserves) join the optimiser
as one parameter group with its own warmup + linear decay over the steps left, through
the Trainer handle's `add_param_group` (the official scripts' `--multi_lr True`, whose
Multi_LambdaLR gives every new group the run's warmup steps and a decay to zero at the
run's end).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import TargetedParams, adapter_prepared, wrap_targets
from suite.methods.api import Method, Prepared, StepHooks, Trainer
from suite.methods.svd_adapters import (
    SensitivityEMA,
    SVDLinear,
    load_svd_state,
    orthogonality_penalty,
    svd_state,
    to_steps,
)

RESERVE_E = 1e-5  # singular value of a reserve triplet trained in advance (official code)


class IncreLoRAParams(TargetedParams):
    rank_fields = ("target_rank",)
    r: PositiveInt = 1
    target_rank: PositiveInt = 8
    # Ranks added to a chosen module per round; None = target_rank // 2, which is the
    # official rank_dic {2: 1, 4: 2, 6: 3, 8: 4} extended to other targets.
    incre_rank_num: PositiveInt | None = None
    top_h: PositiveInt = 6
    init_warmup: NonNegativeFloat = 0.05
    # Steps (>= 1), fraction of the run (< 1), or None: spread the rounds so growth ends
    # half way through the run.
    incre_interval: PositiveFloat | None = None
    advance_learn: bool = True
    beta1: float = Field(default=0.85, gt=0.0, lt=1.0)
    beta2: float = Field(default=0.85, gt=0.0, lt=1.0)
    orth_reg_weight: NonNegativeFloat = 0.1
    alpha: PositiveFloat = 16
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    weight_decay: NonNegativeFloat = 0.0  # for the parameter groups added while training

    @property
    def add_r(self) -> int:
        return self.incre_rank_num or max(1, self.target_rank // 2)


class IncreSVDLinear(SVDLinear):
    """SVDLinear that, while `tracking`, scores itself from the gradient of dense dW."""

    def __init__(self, base: nn.Linear, p: IncreLoRAParams):
        super().__init__(base, p.r, p.alpha, p.dropout)
        self.tracking = False
        self.score = 0.0

    def _record(self, delta: torch.Tensor):
        def hook(grad: torch.Tensor) -> None:
            w = delta.detach().abs()
            self.score = float((w * grad).abs().sum() / math.sqrt(w.numel()))

        return hook

    def update(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.tracking and self.training and torch.is_grad_enabled()):
            return super().update(x)
        delta = self.delta_weight()  # the official loraW output, scale included
        delta.register_hook(self._record(delta))
        return self.dropout(x) @ delta.T


class RankIncreaser(StepHooks):
    """The official `RankAllocator.update_and_increase`, called where its trainer calls
    it: after gradient clipping, right before the optimiser step."""

    def __init__(self, modules: list[IncreSVDLinear], p: IncreLoRAParams, group_warmup: int = 0):
        self.modules, self.p = modules, p
        self.ema = SensitivityEMA(p.beta1, p.beta2)
        self.total_rank = sum(m.rank for m in modules)
        self.target = p.target_rank * len(modules)
        self.optimizer: torch.optim.Optimizer | None = None
        self.trainer: Trainer | None = None
        self.group_warmup = group_warmup  # warmup steps of each group added mid-run
        self.warmup = self.interval = 1

    def bind_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.bind_optimizer(trainer.optimizer)

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def on_train_start(self, total_steps: int) -> None:
        self.warmup = to_steps(self.p.init_warmup, total_steps)
        rounds = math.ceil((self.target - self.total_rank) / (self.p.top_h * self.p.add_r))
        if self.p.incre_interval is None:
            self.interval = max(1, (total_steps // 2 - self.warmup) // max(rounds, 1))
        else:
            self.interval = max(1, to_steps(self.p.incre_interval, total_steps))
        for m in self.modules:
            m.tracking = self.total_rank < self.target

    def extra_loss(self) -> torch.Tensor | None:
        if self.p.orth_reg_weight == 0:
            return None
        return self.p.orth_reg_weight * orthogonality_penalty(self.modules)

    def before_optimizer_step(self, step: int) -> None:
        if step == 0:
            self._register(self.add_reserves(self.modules))
        if self.total_rank < self.target:
            for m in self.modules:
                self.ema.update(m, m.score)
            if step > self.warmup and step % self.interval == 0:
                self.increase()

    def _register(self, params: list[nn.Parameter]) -> None:
        """One new parameter group, with its own schedule when a Trainer is bound (without
        one, e.g. in a bare optimiser loop, the group is added to the optimiser as is)."""
        if not params:
            return
        group = {"params": params, "weight_decay": self.p.weight_decay}
        if self.trainer is not None:
            self.trainer.add_param_group(group, warmup_steps=self.group_warmup)
        elif self.optimizer is not None:
            self.optimizer.add_param_group(group)

    def add_reserves(self, modules: list[IncreSVDLinear]) -> list[nn.Parameter]:
        """A reserve chunk per module: P, Q train in advance, lambda frozen at 1e-5.
        Returns the reserve tensors that train now (none without advance learning)."""
        new = []
        for m in modules:
            e_value = RESERVE_E if self.p.advance_learn else 0.0
            a, e, b = m.add_chunk(self.p.add_r, e_value=e_value, train_e=False)
            a.requires_grad_(self.p.advance_learn)
            b.requires_grad_(self.p.advance_learn)
            new += [a, b] if self.p.advance_learn else []
        return new

    @torch.no_grad()
    def increase(self) -> list[int]:
        """Activate the reserve of the top_h most important modules; returns their indices."""
        scores = torch.tensor([float(self.ema.score(m)) for m in self.modules])
        # The official code takes topk(k = min(top_h, remaining)); k is also capped at the
        # module count so models with fewer targets than top_h work.
        k = min(self.p.top_h, self.target - self.total_rank, len(self.modules))
        threshold = torch.topk(scores, k).values[-1].item()
        chosen = [i for i, s in enumerate(scores.tolist()) if s >= threshold]
        new = []
        for i in chosen:
            m = self.modules[i]
            m.ranknum += self.p.add_r
            self.total_rank += self.p.add_r
            reserve = [m.lora_E[-1]] + (
                [] if self.p.advance_learn else [m.lora_A[-1], m.lora_B[-1]]
            )
            for t in reserve:
                t.requires_grad_(True)
            new += reserve
        # One group per increase, as the official increase_to_target_rank: the activated
        # tensors and the new reserves together.
        new += self.add_reserves([self.modules[i] for i in chosen])
        self._register(new)
        if self.total_rank >= self.target:
            self._finish()
        return chosen

    def _finish(self) -> None:
        """Budget reached: stop scoring and silence the reserves (official code)."""
        for m in self.modules:
            m.tracking = False
            m.lora_E[-1].fill_(0.0)


class IncreLoRA(Method):
    Params = IncreLoRAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_targets(model, patterns, lambda n, lin: IncreSVDLinear(lin, self.params))
        # Multi_LambdaLR gives each new group the run's warmup steps.
        warmup = ctx.training.warmup_steps if ctx.training is not None else 0
        hooks = RankIncreaser([m for _, m in wrapped], self.params, group_warmup=warmup)
        prepared = adapter_prepared(model, hooks)
        # The rank changes while training: save every chunk and rebuild it on load.
        prepared.adapter_state = lambda: svd_state(model)
        prepared.load_adapter_state = lambda state: load_svd_state(model, state)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # At preparation: rank r per target, r (d_in + d_out + 1); it grows while training.
        return sum(self.params.r * (d_in + d_out + 1) for d_out, d_in in shapes)
