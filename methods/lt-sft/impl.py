"""LT-SFT: Lottery-Ticket Sparse Fine-Tuning, both phases inside one training run.

Follows cambridgeltl/composable-sft `src/sft/lt_sft.py` (one iteration; checked by
tests/test_golden_lt_sft.py): phase 1 fine-tunes every weight of the target matrices
(and the head); at its end the K weights that moved most, |theta1 - theta0|, over all
targets together are kept (a global threshold, `unfreeze_k_most_changed_params`); every
parameter is reset to theta0; phase 2 trains only those K entries (and the head again).
As in the original, training stays dense and phase 2 masks the gradient
(`after_backward`). Each phase has its own optimiser and its own warmup + decay schedule
(the reference builds a fresh Trainer optimiser and scheduler per phase): through the
training driver's handle, `restart_optimizer` at the start of phase 1 (over its steps)
and at the switch (over the steps left). The saved adapter is the K (index, value)
pairs, and `Prepared.trainable_count` reports those K entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared, StepHooks, Trainer
from suite.methods.sparse import index_dtype


class LTSFTParams(MethodParams):
    density: float = Field(default=0.01, gt=0.0, le=1.0)
    targets: str | list[str] = "all-linear"
    full_ft_fraction: float = Field(default=0.5, gt=0.0, lt=1.0)


class LTSFTLinear(AdapterLinear):
    """W = W0 + delta; in phase 2 `indices` is the mask of delta (possibly empty: a layer
    none of whose weights made the global top K then stays at W0)."""

    def __init__(self, base: nn.Linear):
        super().__init__(base)
        self.delta = nn.Parameter(torch.zeros_like(base.weight).reshape(-1))
        empty = torch.empty(0, dtype=index_dtype(base.weight.numel()), device=base.weight.device)
        self.register_buffer("indices", empty)
        self.restricted = False  # phase 2 (set by `restrict`)

    @property
    def masked(self) -> bool:
        return self.restricted

    def delta_weight(self) -> torch.Tensor:
        return self.delta.view_as(self.base.weight)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight().to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        xa = self.adapter_input(x)
        weight = self.base.weight.to(xa.dtype) + self.delta_weight()
        bias = None if self.base.bias is None else self.base.bias.to(xa.dtype)
        return F.linear(xa, weight, bias).to(x.dtype)

    def mask(self) -> torch.Tensor:
        keep = torch.zeros_like(self.delta, dtype=torch.bool)
        keep[self.indices.long()] = True
        return keep

    @torch.no_grad()
    def restrict(self, indices: torch.Tensor, values: torch.Tensor | None = None) -> None:
        """Enter phase 2 on `indices`: delta is zero outside them (values there, or 0)."""
        self.restricted = True
        self.indices = indices.to(self.indices.device, self.indices.dtype)
        self.delta.zero_()
        if values is not None:
            self.delta[self.indices.long()] = values.to(self.delta.dtype)


class LTSFTHooks(StepHooks):
    """Both phases inside one run. With the training driver's handle, each phase gets a
    fresh optimiser and its own warmup + decay schedule (`restart_optimizer` at the start
    of phase 1 over its steps, and at the switch over the steps left), as the reference's
    `train` does by building a new Trainer optimiser and scheduler for each phase."""

    def __init__(self, model: nn.Module, layers: list[LTSFTLinear], p: LTSFTParams):
        self.model, self.layers, self.p = model, layers, p
        self.optimizer: torch.optim.Optimizer | None = None
        self.trainer: Trainer | None = None
        self.total = 0
        self.switch_at = 0
        self.completed = 0
        self.theta0: dict[str, torch.Tensor] = {}

    def bind_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer
        super().bind_trainer(trainer)

    def bind_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer

    def on_train_start(self, total_steps: int) -> None:
        self.total = total_steps
        self.switch_at = max(1, int(round(self.p.full_ft_fraction * total_steps)))
        self.completed = 0
        own = {id(m.delta) for m in self.layers}
        self.theta0 = {
            n: p.detach().clone()
            for n, p in self.model.named_parameters()
            if p.requires_grad and id(p) not in own
        }
        if self.trainer is not None:  # phase 1: its own schedule, ending at the switch
            self.trainer.restart_optimizer(steps=self.switch_at)

    @torch.no_grad()
    def after_backward(self, step: int) -> None:
        for layer in self.layers:
            if layer.masked and layer.delta.grad is not None:
                layer.delta.grad.mul_(layer.mask())

    def after_optimizer_step(self, step: int) -> None:
        self.completed += 1
        if self.completed == self.switch_at:
            self.switch()

    @torch.no_grad()
    def switch(self) -> None:
        """Keep the top-K |theta1 - theta0| entries over all targets; reset to theta0;
        phase 2 starts with a fresh optimiser and schedule over the steps left."""
        moved = [m.delta.detach().abs() for m in self.layers]
        k = max(1, int(self.p.density * sum(d.numel() for d in moved)))
        threshold = torch.topk(torch.cat(moved), k, sorted=False).values.min()
        for layer, delta in zip(self.layers, moved, strict=True):
            layer.restrict(torch.nonzero(delta >= threshold).reshape(-1))
        params = dict(self.model.named_parameters())
        for name, value in self.theta0.items():
            params[name].copy_(value)
        if self.trainer is not None:
            self.trainer.restart_optimizer(steps=self.total - self.completed)
        elif self.optimizer is not None:  # no driver handle: at least forget phase 1's state
            for p in [m.delta for m in self.layers] + [params[n] for n in self.theta0]:
                self.optimizer.state.pop(p, None)

    def adapter_entries(self) -> int:
        """The trained adapter's size: the K kept entries (all target weights in phase 1)."""
        return sum(len(m.indices) if m.masked else m.delta.numel() for m in self.layers)


def ltsft_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Phase 2: (indices, values) per layer; phase 1 (no mask yet): the dense delta."""
    state = {}
    for name, p in model.named_parameters():
        if p.requires_grad and not name.endswith(".delta"):
            state[name] = p.detach().clone()
    for name, m in model.named_modules():
        if isinstance(m, LTSFTLinear):
            if m.masked:
                state[f"{name}.indices"] = m.indices.clone()
                state[f"{name}.values"] = m.delta.detach()[m.indices.long()].clone()
            else:
                state[f"{name}.delta"] = m.delta.detach().clone()
    return state


@torch.no_grad()
def load_ltsft_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    rest = dict(state)
    for name, m in model.named_modules():
        if isinstance(m, LTSFTLinear):
            if f"{name}.indices" in rest:
                m.restrict(rest.pop(f"{name}.indices"), rest.pop(f"{name}.values"))
            elif f"{name}.delta" in rest:
                m.delta.copy_(rest.pop(f"{name}.delta"))
    params = dict(model.named_parameters())
    unknown = sorted(set(rest) - set(params))
    if unknown:
        raise KeyError(f"adapter tensors not in the model: {unknown[:5]}")
    for name, tensor in rest.items():
        params[name].copy_(tensor)


class LTSFT(Method):
    Params = LTSFTParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_targets(model, patterns, lambda _, lin: LTSFTLinear(lin))
        hooks = LTSFTHooks(model, [m for _, m in wrapped], self.params)
        prepared = adapter_prepared(model, hooks)
        prepared.adapter_state = lambda: ltsft_state(model)
        prepared.load_adapter_state = lambda state: load_ltsft_state(model, state)
        # Phase 2 keeps K entries of the dense deltas (their gradients masked, as the
        # reference does), so requires_grad cannot say what the adapter holds.
        prepared.trainable_count = hooks.adapter_entries
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # The K entries phase 2 trains (global threshold: ties at the K-th may add more).
        return max(1, int(self.params.density * sum(d_out * d_in for d_out, d_in in shapes)))
