"""SpIEL: sparse fine-tuning with indices + deltas, pruned and regrown during training.

Follows Ansell et al.'s fork of PEFT (`tuners/sft`): `SparseDelta` (k values on a random
initial support), and `SftSelector` with the RigL-style "rigl" algorithm: a selection
phase opens one step before every `reselection_steps`-th step, during which each layer's
dense weight gradient is seen once to pick the top-k |grad| positions as candidates and
then summed at those candidates; `accumulation_steps` later the smallest-|delta| entries
are dropped and the best candidates grown. The first reselection replaces the whole
(random) support; later ones a share decaying linearly from `initial_rate` to 0.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt

from suite.methods.adapters import adapter_prepared
from suite.methods.api import Method, MethodParams, Prepared, StepHooks
from suite.methods.sparse import (
    SparseDeltaLinear,
    budget,
    load_sparse_state,
    prune_and_regrow,
    random_indices,
    sparse_state,
    wrap_sparse,
)


class SpielParams(MethodParams):
    density: float = Field(default=0.01, gt=0.0, le=1.0)
    targets: str | list[str] = "all-linear"
    reselection_steps: PositiveInt = 20
    accumulation_steps: PositiveInt = 5
    initial_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    full_first_reselection: bool = True


class CandidateScores:
    """One layer's regrowth candidates and their gradients summed over a selection phase."""

    def __init__(self, k: int):
        self.k = k
        self.candidates: torch.Tensor | None = None
        self.grads: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, grad: torch.Tensor) -> None:
        flat = grad.reshape(-1)
        if self.candidates is None:
            self.candidates = torch.topk(flat.abs(), self.k, sorted=False).indices
            self.grads = flat[self.candidates].clone()
        else:
            self.grads += flat[self.candidates]


class SpielHooks(StepHooks):
    """SftSelector.step, driven by the generic loop's after_optimizer_step."""

    def __init__(self, layers: list[SparseDeltaLinear], p: SpielParams):
        self.layers, self.p = layers, p
        self.optimizer: torch.optim.Optimizer | None = None
        self.scores: list[CandidateScores] = []
        self.total = 0
        self.completed = 0
        self.swapped: list[int] = []  # entries changed per reselection (for tests, logs)

    def bind_optimizer(self, optimizer) -> None:
        self.optimizer = optimizer

    def on_train_start(self, total_steps: int) -> None:
        self.total, self.completed = total_steps, 0
        self._begin()

    def after_optimizer_step(self, step: int) -> None:
        self.completed += 1
        n, a = self.p.reselection_steps, self.p.accumulation_steps
        if (self.completed + 1) % n == 0:
            self._begin()
        if self.completed % n == a:
            self._end()

    def on_train_end(self) -> None:
        self._detach()

    def _begin(self) -> None:
        self.scores = [CandidateScores(layer.k) for layer in self.layers]
        for layer, scores in zip(self.layers, self.scores, strict=True):
            layer.grad_hook = scores

    def _detach(self) -> None:
        for layer in self.layers:
            layer.grad_hook = None

    def rate(self) -> float:
        if self.p.full_first_reselection and self.completed == self.p.accumulation_steps:
            return 1.0
        return self.p.initial_rate * (1 - self.completed / max(self.total, 1))

    def _end(self) -> None:
        if self.completed > self.total:
            return
        self._detach()
        rate, changed = self.rate(), 0
        for layer, scores in zip(self.layers, self.scores, strict=True):
            if scores.candidates is not None:
                slots = prune_and_regrow(
                    layer, scores.candidates, scores.grads, rate, self.optimizer
                )
                changed += len(slots)
        self.swapped.append(changed)
        self.scores = []


class Spiel(Method):
    Params = SpielParams

    def _k(self, d_out: int, d_in: int) -> int:
        return budget(d_out, d_in, None, self.params.density)

    def prepare(self, model, ctx) -> Prepared:
        gen = torch.Generator().manual_seed(ctx.seed)
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_sparse(
            model,
            patterns,
            lambda _, lin: random_indices(lin.weight.numel(), self._k(*lin.weight.shape), gen),
        )
        prepared = adapter_prepared(model, SpielHooks([m for _, m in wrapped], self.params))
        prepared.adapter_state = lambda: sparse_state(model)
        prepared.load_adapter_state = lambda state: load_sparse_state(model, state)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        return sum(self._k(d_out, d_in) for d_out, d_in in shapes)
