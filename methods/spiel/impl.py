"""SpIEL: sparse fine-tuning with indices + deltas, pruned and regrown during training.

Follows Ansell et al.'s fork of PEFT (`tuners/sft`, checked by tests/test_golden_spiel.py):
- budget (`SftModel.inject_adapter`): `int(total_params * density)` deltas, where
  total_params counts EVERY parameter of the model (embeddings and head included), spread
  over the targets in proportion to their size: int(budget * numel / numel of all targets);
- `SparseDelta`: k values (zero) on a random initial support, merged by scatter-add;
- `SftSelector` with the RigL-style "rigl" algorithm: a selection phase opens one step
  before every `reselection_steps`-th step, during which each layer's dense weight
  gradient picks the top-k |grad| positions as candidates once and is then summed (and
  squared-summed) at those candidates; `accumulation_steps` later the smallest-|delta|
  entries are dropped and the best candidates grown. The first reselection replaces the
  whole (random) support; later ones a share decaying from `initial_rate` to 0;
- `SftAdamW`: the method's own optimiser, an AdamW with a per-entry step count. A regrown
  entry gets age = number of accumulated gradients and moments seeded from their mean,
  biased by (1 - beta^age) so that Adam's bias correction unbiases them again
  (`select_rigl` / `update_optimizer`). Parameter groups as in the SpIEL training script
  (ducdauge/sft-llm finetune.py): no weight decay for names with "bias" or
  "layer_norm.weight", weight decay for everything else, the deltas included.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveInt

from suite.methods.adapters import adapter_prepared
from suite.methods.api import Method, MethodParams, Prepared, StepHooks
from suite.methods.sparse import (
    PerEntryAdamW,
    SparseDeltaLinear,
    load_sparse_state,
    prune_and_regrow,
    random_indices,
    seed_optimizer_entries,
    sparse_state,
    wrap_sparse,
)
from suite.methods.targets import find_targets

# ducdauge/sft-llm finetune.py: parameters whose names contain these get no weight decay.
NO_DECAY = ("bias", "layer_norm.weight")


class SpielParams(MethodParams):
    # Share of ALL model parameters (not of the targets) that become deltas.
    density: float = Field(default=0.01, gt=0.0, le=1.0)
    # SftConfig.num_tunable_weights: an absolute budget that overrides density.
    num_tunable_weights: PositiveInt | None = None
    targets: str | list[str] = "all-linear"
    reselection_steps: PositiveInt = 20
    accumulation_steps: PositiveInt = 5
    initial_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    rate_policy: Literal["linear", "cosine"] = "linear"
    full_first_reselection: bool = True

    def shape_issues(self, shapes: list[tuple[int, int]]) -> dict[str, str]:
        issues = super().shape_issues(shapes)
        in_targets = sum(d_out * d_in for d_out, d_in in shapes)
        if self.num_tunable_weights is not None and self.num_tunable_weights > in_targets:
            issues["num_tunable_weights"] = (
                f"num_tunable_weights = {self.num_tunable_weights} exceeds the {in_targets} "
                "weights of its targets"
            )
        return issues


def deltas_per_target(total_params: int, numels: dict[str, int], p: SpielParams) -> dict[str, int]:
    """SftModel.inject_adapter: the budget over all parameters, split by target size."""
    tunable = p.num_tunable_weights or int(total_params * p.density)
    in_targets = sum(numels.values())
    if not 0 < tunable <= in_targets:
        raise ValueError(
            f"SpIEL budget {tunable} does not fit the {in_targets} weights of its targets"
        )
    return {name: int(tunable * numel / in_targets) for name, numel in numels.items()}


class CandidateScores:
    """One layer's regrowth candidates and their gradient statistics over a selection
    phase (SftSelector.gradient_accumulation_hook)."""

    def __init__(self, k: int):
        self.k = k
        self.candidates: torch.Tensor | None = None
        self.grads: torch.Tensor | None = None
        self.grads_sq: torch.Tensor | None = None
        self.samples = 0

    @torch.no_grad()
    def __call__(self, grad: torch.Tensor) -> None:
        flat = grad.reshape(-1)
        if self.candidates is None:
            self.candidates = torch.topk(flat.abs(), self.k, sorted=False).indices
            self.grads = flat[self.candidates].clone()
            self.grads_sq = self.grads * self.grads
        else:
            new = flat[self.candidates]
            self.grads += new
            self.grads_sq.addcmul_(new, new)
        self.samples += 1


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
        progress = self.completed / max(self.total, 1)
        if self.p.rate_policy == "cosine":
            return self.p.initial_rate * (1 + math.cos(math.pi * progress)) / 2
        if self.p.full_first_reselection and self.completed == self.p.accumulation_steps:
            return 1.0
        return self.p.initial_rate * (1 - progress)

    def _betas(self, param: torch.Tensor) -> tuple[float, float]:
        for group in self.optimizer.param_groups:
            if any(p is param for p in group["params"]):
                return group["betas"]
        raise ValueError("a SpIEL delta vector is not in the optimiser")

    def _end(self) -> None:
        if self.completed > self.total:
            return
        self._detach()
        rate, changed = self.rate(), 0
        for layer, scores in zip(self.layers, self.scores, strict=True):
            if scores.candidates is None:
                continue
            slots, grown = prune_and_regrow(layer, scores.candidates, scores.grads, rate)
            changed += len(slots)
            if self.optimizer is not None and len(slots):
                self._seed(layer, scores, slots, grown)
        self.swapped.append(changed)
        self.scores = []

    def _seed(self, layer, scores: CandidateScores, slots, grown) -> None:
        """Adam state of regrown entries: the accumulated gradient statistics, biased so
        that the per-entry bias correction unbiases them (select_rigl). One backward pass
        per step here, so the age is the number of accumulated gradients."""
        beta1, beta2 = self._betas(layer.values)
        age = torch.full_like(scores.grads[grown], float(scores.samples))
        mean = scores.grads[grown] / scores.samples * (1.0 - beta1**age)
        mean_sq = scores.grads_sq[grown] / scores.samples * (1.0 - beta2**age)
        seeds = {"age": age, "exp_avg": mean, "exp_avg_sq": mean_sq}
        seed_optimizer_entries(self.optimizer, layer.values, slots, seeds)


def spiel_optimizer(named_params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SftAdamW over every trainable tensor, grouped as ducdauge/sft-llm's finetune.py."""
    named = [(n, p) for n, p in named_params if p.requires_grad]
    decay = [p for n, p in named if not any(s in n for s in NO_DECAY)]
    no_decay = [p for n, p in named if any(s in n for s in NO_DECAY)]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return PerEntryAdamW([g for g in groups if g["params"]], lr=lr)


class Spiel(Method):
    Params = SpielParams

    def prepare(self, model, ctx) -> Prepared:
        # = ctx.generator(); api.py imports torch only for type checking, so that
        # method raises NameError at the time of writing.
        gen = torch.Generator().manual_seed(ctx.seed)
        total = sum(p.numel() for p in model.parameters())
        patterns = ctx.preset.resolve_targets(self.params.targets)
        numels = {n: lin.weight.numel() for n, lin in find_targets(model.backbone, patterns)}
        ks = deltas_per_target(total, numels, self.params)
        # A uniform random initial support, as SparseDelta's (which draws torch.rand top-k
        # from the global generator; this one is seeded from the cell).
        wrapped = wrap_sparse(
            model, patterns, lambda name, lin: random_indices(lin.weight.numel(), ks[name], gen)
        )
        prepared = adapter_prepared(model, SpielHooks([m for _, m in wrapped], self.params))
        prepared.adapter_state = lambda: sparse_state(model)
        prepared.load_adapter_state = lambda state: load_sparse_state(model, state)
        prepared.make_optimizer = spiel_optimizer
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError(
            "SpIEL's budget is a share of the whole model's parameters, not of the targets"
        )
