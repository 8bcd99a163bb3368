"""DiffoRA (Jiang, Wang, Yuan; arXiv 2502.08905), as reconstructed from its abstract.

A Differential Adaptation Matrix chooses which modules get a LoRA: every target module j
carries a LoRA pair and a gate logit alpha_j, relaxed continuously as

    y = W0 x + sigmoid(alpha_j) s B_j A_j x                       (search phase)

and trained bi-level, DARTS-style (first-order): after each training step on the
training stream (the LoRA weights), one Adam step on the gate logits alone, on a batch
of the training examples the runner holds out (`Method.train_holdout`; never validation
or test). After `search_fraction` of the run the gates are discretised: the
round(rho x modules) modules with the largest logits keep their LoRA (ties: the earlier
module), the rest lose it. Weight sharing: a kept module keeps its searched A, B and its
gate value sigmoid(alpha_j), frozen as a constant scale, so its function does not jump
at the switch; it then trains on as a plain LoRA (s sigmoid(alpha_j) B A, mergeable).

Why a sigmoid: each module's choice is binary (LoRA or none); DARTS's softmax over the
two candidates {LoRA, zero} with logits (a, b) is sigmoid(a - b), so one logit per
module is that relaxation without the redundant one. The arch optimiser is DARTS's
(Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3).
"""

from __future__ import annotations

import itertools
import math

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import adapter_prepared, trainable_state, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared, StepHooks
from suite.methods.lora_pair import LoRAPairLinear

SEARCHING, KEPT, DROPPED = 0, 1, 2


class DiffoRAParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 8
    alpha: PositiveFloat = 16
    rho: float = Field(default=0.5, gt=0.0, le=1.0)
    search_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    arch_lr: PositiveFloat = 3e-4
    arch_weight_decay: float = Field(default=1e-3, ge=0.0)
    targets: str | list[str] = "qv"


def keep_count(rho: float, modules: int) -> int:
    """round(rho x modules), halves up, at least one."""
    return max(1, math.floor(rho * modules + 0.5))


def select(logits: list[float], keep: int) -> list[int]:
    """Indices of the `keep` largest logits (ties: the earlier module), in module order."""
    order = sorted(range(len(logits)), key=lambda j: (-logits[j], j))
    return sorted(order[:keep])


class DiffoRALinear(LoRAPairLinear):
    """A LoRA whose output a gate scales: sigmoid(logit) while searching and once kept
    (then frozen), zero once dropped."""

    def __init__(self, base: nn.Linear, p: DiffoRAParams):
        super().__init__(base, p.r, scaling=p.alpha / p.r)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        # Trained only by the outer step (never by the main optimiser): not requires_grad.
        self.gate_logit = nn.Parameter(torch.zeros(1, **like), requires_grad=False)
        self.register_buffer("gate_state", torch.tensor(SEARCHING))

    @property
    def dropped(self) -> bool:
        return int(self.gate_state) == DROPPED

    def gate(self) -> torch.Tensor:
        return torch.sigmoid(self.gate_logit) * (0.0 if self.dropped else 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) if self.dropped else super().forward(x)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate().to(x.dtype) * super().update(x)

    def delta_weight(self) -> torch.Tensor:
        return self.gate() * super().delta_weight()

    def decide(self, keep: bool) -> None:
        self.gate_state.fill_(KEPT if keep else DROPPED)
        if not keep:
            for p in (self.lora_A.weight, self.lora_B.weight):
                p.requires_grad_(False)
                p.grad = None


class DiffoRASearch(StepHooks):
    """The bi-level search: an outer Adam step on the gate logits after each training step
    (held-out batches only), then the discretisation at `search_fraction` of the run."""

    def __init__(self, layers: list[DiffoRALinear], p: DiffoRAParams, holdout, loss_fn, model):
        self.layers, self.p, self.model = layers, p, model
        self.holdout, self.loss_fn = holdout, loss_fn
        self.search_until, self.decided = 0, False
        self.batches = self.arch_optimizer = None

    def bind_trainer(self, trainer) -> None:
        if self.holdout is None or self.loss_fn is None:
            raise ValueError(
                "diffora's outer step needs held-out training batches and the task loss "
                "(ctx.holdout_batches, ctx.loss_fn): the runner gives them, from the share "
                "of the training split Method.train_holdout() names"
            )
        self.search_until = keep_count(self.p.search_fraction, trainer.total_steps)
        self.batches = iter(self.holdout())
        # Built here, after the engine's fp32 cast of the adapter (DARTS's settings).
        self.arch_optimizer = torch.optim.Adam(
            [m.gate_logit for m in self.layers],
            lr=self.p.arch_lr,
            betas=(0.5, 0.999),
            weight_decay=self.p.arch_weight_decay,
        )
        super().bind_trainer(trainer)

    def outer_step(self) -> None:
        """One first-order DARTS step: d(held-out loss)/d(logits) at the current weights."""
        logits = [m.gate_logit for m in self.layers]
        for t in logits:
            t.requires_grad_(True)
        try:
            loss = self.loss_fn(self.model, next(self.batches))
            grads = torch.autograd.grad(loss, logits)
        finally:
            for t in logits:
                t.requires_grad_(False)
        for t, g in zip(logits, grads, strict=True):
            t.grad = g
        self.arch_optimizer.step()
        self.arch_optimizer.zero_grad(set_to_none=True)

    def discretise(self) -> list[int]:
        """Keep the round(rho x modules) modules with the largest logits; drop the rest."""
        logits = [float(m.gate_logit) for m in self.layers]
        kept = select(logits, keep_count(self.p.rho, len(self.layers)))
        for j, layer in enumerate(self.layers):
            layer.decide(j in kept)
        self.decided = True
        return kept

    def after_optimizer_step(self, step: int) -> None:
        if self.decided or step >= self.search_until:
            return
        self.outer_step()
        if step + 1 == self.search_until:
            self.discretise()

    def on_train_end(self) -> None:
        if not self.decided:  # a run shorter than its plan still ends with a selection
            self.discretise()


class DiffoRA(Method):
    Params = DiffoRAParams

    def train_holdout(self) -> float:
        return self.params.holdout_fraction

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_targets(model, patterns, lambda _, lin: DiffoRALinear(lin, self.params))
        layers = [m for _, m in wrapped]
        hooks = DiffoRASearch(layers, self.params, ctx.holdout_batches, ctx.loss_fn, model)
        prepared = adapter_prepared(model, hooks)
        # The saved adapter: the trained LoRAs plus every module's gate and decision.
        prepared.adapter_state = lambda: (
            trainable_state(model)
            | {
                n: t.detach().clone()
                for n, t in itertools.chain(model.named_parameters(), model.named_buffers())
                if n.endswith(("gate_logit", "gate_state"))
            }
        )
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # After prepare every module has its LoRA (the gates train only in the outer step);
        # after the selection, r (d_in + d_out) per kept module.
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
