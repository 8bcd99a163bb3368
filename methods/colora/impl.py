"""CoLoRA, contribution-based low-rank adaptation (Park, Kim, Chun; ECCV 2024, arXiv
2408.01099), as reconstructed from its abstract, project page and figures.

Read: each layer's contribution to the new task is quantified with FAIG (filter
attribution integrated gradients: the path integral of the loss gradient from the
pre-trained to a fine-tuned model, times their difference), and each layer gets a LoRA
whose rank r_i follows that contribution ("flexible r based on contribution"). Our
reading, none of it from the paper's text (not reachable):

1. Probe: a short fine-tune of the target weights and the head (`probe_steps` Adam steps
   at `probe_lr`, fp32 master copies, on the first training batches) gives theta_T from
   theta_0; every tensor is restored afterwards.
2. FAIG per target layer, as the FAIG code (Wang et al. 2022) integrates: with K
   points theta_k = (k/K) theta_0 + (1 - k/K) theta_T, k = 0..K-1,
       c_i = mean over W_i's entries | (theta_0 - theta_T) * (1/K) sum_k dL/dW_i(theta_k) |
   (the mean, not the sum, so layers of different sizes compare).
3. Ranks: LoRA's budget, r x (number of targets), split in proportion to c: every layer
   gets `r_min`, the rest goes by largest remainder (ties to the earlier layer), capped
   at min(d_in, d_out) with the excess re-split among the uncapped layers.
4. Train: a plain LoRA per layer at rank r_i (PEFT's init, scale alpha / r_i as PEFT's
   rank_pattern does).
"""

from __future__ import annotations

import math

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import adapter_prepared, load_state_strict, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.lora_pair import LoRAPairLinear, lora_factors
from suite.methods.targets import find_targets


class CoLoRAParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 8  # the average rank: the budget is r per target, as LoRA's
    r_min: PositiveInt = 1
    alpha: PositiveFloat = 16
    probe_steps: PositiveInt = 4
    probe_lr: PositiveFloat = 1e-4
    ig_steps: PositiveInt = 4
    targets: str | list[str] = "qv"


def largest_remainder(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights` (uniform if they are all 0): floors, then
    one more each for the largest fractional parts (ties: the earlier index)."""
    s = sum(weights)
    shares = [w / s for w in weights] if s > 0 else [1 / len(weights)] * len(weights)
    ideal = [total * x for x in shares]
    out = [math.floor(v) for v in ideal]
    order = sorted(range(len(ideal)), key=lambda i: (-(ideal[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def allocate_ranks(
    contributions: list[float], budget: int, r_min: int, caps: list[int]
) -> list[int]:
    """Ranks summing to `budget`: r_min each, the rest in proportion to the contributions,
    none above its cap (an excess is re-split among the layers below their caps)."""
    n = len(contributions)
    if budget < n * r_min or budget > sum(caps):
        raise ValueError(f"a rank budget of {budget} cannot give {n} layers {r_min}..caps {caps}")
    ranks, free = [r_min] * n, list(range(n))
    while True:
        left = budget - sum(ranks)
        extra = largest_remainder(left, [contributions[i] for i in free])
        over = [i for i, e in zip(free, extra, strict=True) if ranks[i] + e > caps[i]]
        if not over:
            for i, e in zip(free, extra, strict=True):
                ranks[i] += e
            return ranks
        for i in over:  # fill the capped layers, split what is left among the others
            ranks[i] = caps[i]
        free = [i for i in free if i not in over]


@torch.no_grad()
def _assign(params: list[nn.Parameter], values: list[torch.Tensor]) -> None:
    for p, v in zip(params, values, strict=True):
        p.copy_(v.to(p.dtype))


def _probe_fine_tune(params, masters, batches, loss_fn, model, lr: float) -> None:
    """A few Adam steps on fp32 master copies (a bf16 step at lr 1e-4 would vanish)."""
    opt = torch.optim.Adam(masters, lr=lr)
    for batch in batches:
        grads = torch.autograd.grad(loss_fn(model, batch), params)
        for m, g in zip(masters, grads, strict=True):
            m.grad = g.float()
        opt.step()
        _assign(params, masters)


def faig_contributions(model, weights, batches, loss_fn, p: CoLoRAParams) -> list[float]:
    """FAIG of each target weight between theta_0 and a probe fine-tune theta_T; every
    tensor, flag and mode is restored after."""
    params = list(weights) + [q for q in model.head.parameters() if q.requires_grad]
    flags, was_training = [q.requires_grad for q in params], model.training
    theta0 = [q.detach().float().clone() for q in params]
    masters = [t.clone().requires_grad_(True) for t in theta0]
    model.eval()  # no dropout: the probe draws no random numbers
    try:
        for q in params:
            q.requires_grad_(True)
        _probe_fine_tune(params, masters, batches, loss_fn, model, p.probe_lr)
        theta_t = [m.detach() for m in masters]
        total = [torch.zeros_like(t) for t in theta0[: len(weights)]]
        for k in range(p.ig_steps):
            a = k / p.ig_steps
            _assign(params, [a * t0 + (1 - a) * tt for t0, tt in zip(theta0, theta_t, strict=True)])
            grads = torch.autograd.grad(loss_fn(model, batches[0]), list(weights))
            for acc, g in zip(total, grads, strict=True):
                acc += g.float()
        diffs = zip(theta0, theta_t, total, strict=False)
        return [float(((t0 - tt) * g / p.ig_steps).abs().mean()) for t0, tt, g in diffs]
    finally:
        _assign(params, theta0)
        for q, flag in zip(params, flags, strict=True):
            q.requires_grad_(flag)
        model.train(was_training)


class CoLoRALinear(LoRAPairLinear):
    """A LoRA at this layer's allocated rank, scale alpha / rank."""

    def __init__(self, base: nn.Linear, rank: int, p: CoLoRAParams, contribution: float):
        super().__init__(base, rank, scaling=p.alpha / rank)
        self.alpha, self.contribution = p.alpha, contribution

    def resize(self, rank: int) -> None:
        """Rebuild the factors at another rank (loading an adapter saved elsewhere)."""
        if rank != self.r:
            self.r, self.scaling = rank, self.alpha / rank
            like = self.lora_A.weight
            self.lora_A, self.lora_B = lora_factors(self.in_features, self.out_features, rank, like)


class CoLoRA(Method):
    Params = CoLoRAParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        if ctx.train_batches is None or ctx.loss_fn is None:
            raise ValueError(
                "colora measures each layer's contribution on training batches "
                "(ctx.train_batches and ctx.loss_fn); the runner and the conformance bench give them"
            )
        found = find_targets(model.backbone, ctx.preset.resolve_targets(p.targets))
        stream = iter(ctx.train_batches())
        batches = [next(stream) for _ in range(p.probe_steps)]
        weights = [lin.weight for _, lin in found]
        contributions = faig_contributions(model, weights, batches, ctx.loss_fn, p)
        caps = [min(lin.in_features, lin.out_features) for _, lin in found]
        ranks = allocate_ranks(contributions, p.r * len(found), p.r_min, caps)
        plan = {
            name: (rank, c) for (name, _), rank, c in zip(found, ranks, contributions, strict=True)
        }
        wrap_targets(
            model,
            [name for name, _ in found],
            lambda name, lin: CoLoRALinear(lin, plan[name][0], p, plan[name][1]),
        )
        prepared = adapter_prepared(model)
        prepared.load_adapter_state = lambda state: _load(model, state)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # The budget is LoRA's, r per target; equal to sum r_i (d_in + d_out) when the
        # targets share d_in + d_out (q and v of the presets here).
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)


def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an adapter whose ranks may differ from this model's allocation."""
    for name, module in model.named_modules():
        key = f"{name}.lora_A.weight"
        if isinstance(module, CoLoRALinear) and key in state:
            module.resize(state[key].shape[0])
    load_state_strict(model, state)
