"""LLaVA-MoLE (Chen et al., arXiv 2401.16160), following its released code
(forwchen/LLaVA-MoLE@5876301: moe.py `LoRA_MOE_LM`, model.py's balance loss):

- every block holding expert targets (`targets`, default the preset's `mlp` family; a
  block is the targets' parent module, Llama's `mlp`) gets one router, p = softmax(W_g x
  + b) of the block's input x (an `nn.Linear` with bias, default init), shared by the
  block's projections: down_proj is routed by the block's input too, not its own;
- each targeted projection gets E LoRA experts (A Kaiming-uniform, B zeros, scale
  alpha / r, each expert with its own dropout mask) and adds sum_e g_e s B_e A_e
  dropout_e(x): g = p with `routing: dense` (the released config's dense_moe = True), or
  the argmax expert unweighted with `routing: top1` (its sparse path);
- the other projections (`lora_targets`, default `attention`: the released q,k,v,o) get
  one PEFT-style LoRA;
- the balance loss, per sequence over every block and its unpadded tokens together,
  sum_e mean(p_e) mean(onehot(argmax p)_e), averaged over the batch, times
  `aux_loss_weight`; only p carries gradient.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared, StepHooks
from suite.methods.lora_pair import lora_factors
from suite.methods.targets import find_targets, replace_module


class MoLEParams(MethodParams):
    rank_fields = ("r",)
    experts: int = Field(default=3, ge=2)
    r: PositiveInt = 32
    alpha: PositiveFloat = 64
    dropout: NonNegativeFloat = Field(default=0.05, lt=1.0)
    targets: str | list[str] = "mlp"  # projections that get experts
    lora_targets: str | list[str] = "attention"  # projections that get a plain LoRA ([]: none)
    routing: Literal["dense", "top1"] = "dense"
    aux_loss_weight: NonNegativeFloat = 0.01


class BlockRouter(nn.Module):
    """One block's router: p = softmax(W_g x + b) of the block's input, set by a forward
    pre-hook on the block before its projections run; kept for the balance loss while
    training. W_g and b as the released `nn.Linear(d_model, E)` initialises them; plain
    parameters, so no target pattern can select the router as a linear to adapt."""

    def __init__(self, d_model: int, experts: int, dtype: torch.dtype, device):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(experts, d_model, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(experts, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -1 / math.sqrt(d_model), 1 / math.sqrt(d_model))
        self.probs: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []

    def route(self, x: torch.Tensor) -> None:
        logits = F.linear(x.to(self.weight.dtype), self.weight, self.bias)
        self.probs = F.softmax(logits, dim=-1)
        if self.training:
            self.history.append(self.probs)


class ExpertsLinear(AdapterLinear):
    """A frozen linear plus E LoRA experts weighted by its block router's gates; the
    experts' A and B are stored stacked (E*r rows of A, E*r columns of B)."""

    def __init__(self, base: nn.Linear, router: BlockRouter, p: MoLEParams):
        super().__init__(base)
        self.experts, self.r, self.scaling, self.routing = p.experts, p.r, p.alpha / p.r, p.routing
        dtype, device = base.weight.dtype, base.weight.device
        rank = p.experts * p.r
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, dtype=dtype, device=device)
        for a in self.lora_A.weight.view(p.experts, p.r, -1):  # one LoRALayer init per expert
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        self.__dict__["block_router"] = router  # the block's module: not a child here

    def gates(self, probs: torch.Tensor) -> torch.Tensor:
        if self.routing == "dense":
            return probs
        return F.one_hot(probs.argmax(dim=-1), self.experts).to(probs.dtype)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(self.block_router.probs).to(x.dtype)
        a = self.lora_A.weight.view(self.experts, self.r, -1)
        if isinstance(self.dropout, nn.Identity) or not self.training:
            h = self.lora_A(x).unflatten(-1, (self.experts, self.r))
        else:  # the released experts each drop their own input mask
            wide = x.unsqueeze(-2).expand(*x.shape[:-1], self.experts, x.shape[-1])
            h = torch.einsum("...ed,erd->...er", self.dropout(wide), a)
        return self.lora_B((h * gates.unsqueeze(-1)).flatten(-2)) * self.scaling


class PlainLoRALinear(AdapterLinear):
    """y = W0 x + (alpha / r) B A dropout(x); PEFT's LoRA init (Kaiming-uniform A, zero B)."""

    def __init__(self, base: nn.Linear, p: MoLEParams):
        super().__init__(base)
        self.scaling = p.alpha / p.r
        self.lora_A, self.lora_B = lora_factors(
            base.in_features, base.out_features, p.r, base.weight
        )
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()

    def update(self, x):
        return self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    def delta_weight(self):
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling


class BalanceLoss(StepHooks):
    """model.py:276-287: for each sequence, over all blocks and its unpadded tokens,
    sum_e mean(p_e) * mean(onehot_e); the mean over sequences, times the weight."""

    def __init__(self, routers: list[BlockRouter], weight: float):
        self.routers, self.weight = routers, weight
        self.mask: torch.Tensor | None = None  # the last forward's attention mask

    def extra_loss(self) -> torch.Tensor | None:
        probs = [torch.stack(r.history) for r in self.routers if r.history]
        for r in self.routers:
            r.history = []
        if self.weight == 0 or not probs:
            return None
        p = torch.cat(probs).float()  # (forwards x blocks, batch, ..., E)
        p = p.flatten(2, -2) if p.dim() > 3 else p.unsqueeze(2)  # (L, B, T, E)
        mask = self.mask
        if mask is None or mask.shape != p.shape[1:3]:
            mask = torch.ones(p.shape[1:3], device=p.device)
        onehot = F.one_hot(p.detach().argmax(-1), p.shape[-1]).to(p.dtype)
        total = p.new_zeros(())
        for i in range(p.shape[1]):
            keep = mask[i].bool()
            probs_i, chosen_i = p[:, i, keep].flatten(0, 1), onehot[:, i, keep].flatten(0, 1)
            total = total + (probs_i.mean(0) * chosen_i.mean(0)).sum()
        return self.weight * total / p.shape[1]


def attach_routers(model: nn.Module, targets, p: MoLEParams) -> dict[str, BlockRouter]:
    """One router per parent module of the expert targets, sized by the block's input (the
    first target's d_in), called on that input by a forward pre-hook."""
    routers: dict[str, BlockRouter] = {}
    for name, linear in targets:
        parent = name.rpartition(".")[0]
        if parent not in routers:
            w = linear.weight
            routers[parent] = BlockRouter(linear.in_features, p.experts, w.dtype, w.device)
    for parent, router in routers.items():
        block = model.backbone.get_submodule(parent)
        block.add_module("mole_router", router)
        block.register_forward_pre_hook(
            lambda _m, args, kwargs, router=router: router.route(
                args[0] if args else next(iter(kwargs.values()))
            ),
            with_kwargs=True,
        )
    return routers


class MoLE(Method):
    Params = MoLEParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        found = find_targets(model.backbone, ctx.preset.resolve_targets(p.targets))
        routers = attach_routers(model, found, p)
        for name, linear in found:
            router = routers[name.rpartition(".")[0]]
            replace_module(model.backbone, name, ExpertsLinear(linear, router, p))
        plain = ctx.preset.resolve_targets(p.lora_targets)
        if plain:
            wrap_targets(model, plain, lambda name, lin: PlainLoRALinear(lin, p))
        hooks = BalanceLoss(list(routers.values()), p.aux_loss_weight)

        def keep_mask(_m, _args, kwargs):
            hooks.mask = kwargs.get("attention_mask")

        model.backbone.register_forward_pre_hook(keep_mask, with_kwargs=True)
        return adapter_prepared(model, hooks, mergeable=False)

    def expected_trainable_params(self, shapes) -> int:
        # Per expert target: E experts of r (d_in + d_out), plus a router (E x (d_in + 1))
        # per block. `shapes` does not say which targets share a block: this counts one
        # block per target (BERT's intermediate/output, the conformance bench); a Llama MLP
        # shares one router among gate/up/down (tests/test_golden_mole.py counts it).
        p = self.params
        return sum(p.experts * (p.r * (d_in + d_out) + d_in + 1) for d_out, d_in in shapes)
