"""LoRA with an input-dependent gate on blocks of its rank, shared by MoLE-style top-1
mixtures (a block = one expert's r ranks) and SMoRA (a block = one rank).

A mixture of E LoRA experts of rank r is one LoRA of rank E*r whose rank blocks are
switched by a router (the equivalence SMoRA's paper builds on), so both methods use one
pair of matrices and every expert gets a (possibly zero) gradient each step:

    y = W0 x + s B (expand(g(x)) * A dropout(x)),  g(x) = keep_topk(softmax(W_g x), k)

Selection uses W_g x + b, where b is an untrained balancing bias (zero unless a method
updates it); gate values come from the softmax over all experts without b, so the
router receives gradients even with k = 1 (Switch Transformer's choice).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods.adapters import AdapterLinear
from suite.methods.api import StepHooks


class GatedLoRALinear(AdapterLinear):
    """A frozen linear plus a LoRA whose `experts` rank blocks are gated per token."""

    def __init__(
        self,
        base: nn.Linear,
        experts: int,
        block_rank: int,
        top_k: int,
        scaling: float,
        dropout: float = 0.0,
    ):
        super().__init__(base)
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, {experts}], got {top_k}")
        self.experts, self.block_rank, self.top_k, self.scaling = (
            experts,
            block_rank,
            top_k,
            scaling,
        )
        dtype, device = base.weight.dtype, base.weight.device
        rank = experts * block_rank
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, dtype=dtype, device=device)
        self.router = nn.Linear(base.in_features, experts, bias=False, dtype=dtype, device=device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # the model is unchanged at init
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.register_buffer("route_bias", torch.zeros(experts, dtype=torch.float32, device=device))
        self.last_load: torch.Tensor | None = None  # tokens per expert in the last training forward
        self.last_probs: torch.Tensor | None = None  # mean router probability per expert

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(..., experts) gate values: softmax probabilities kept at the top-k experts."""
        logits = self.router(x).float()
        chosen = torch.topk(logits + self.route_bias, self.top_k, dim=-1).indices
        keep = torch.zeros_like(logits).scatter_(-1, chosen, 1.0)
        probs = F.softmax(logits, dim=-1)
        if self.training:
            flat = keep.reshape(-1, self.experts)
            self.last_load = flat.sum(0).detach()
            self.last_probs = probs.reshape(-1, self.experts).mean(0)
        return (probs * keep).to(x.dtype)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gates(x).repeat_interleave(self.block_rank, dim=-1)
        return self.lora_B(self.lora_A(self.dropout(x)) * gate) * self.scaling


class RouterHooks(StepHooks):
    """Load balancing for gated LoRA modules.

    `aux_weight` > 0 adds Switch Transformer's auxiliary loss E * sum_e f_e P_e (f_e the
    fraction of routed tokens, P_e the mean router probability); `bias_rate` > 0 applies
    loss-free balancing after each optimiser step: b_e += rate * sign(mean load - load_e).
    """

    def __init__(self, modules: list[GatedLoRALinear], aux_weight: float, bias_rate: float):
        self.modules, self.aux_weight, self.bias_rate = modules, aux_weight, bias_rate

    def extra_loss(self) -> torch.Tensor | None:
        if self.aux_weight == 0:
            return None
        terms = []
        for m in self.modules:
            if m.last_load is None:
                continue
            frac = m.last_load / m.last_load.sum().clamp(min=1)
            terms.append(m.experts * (frac * m.last_probs).sum())
        return self.aux_weight * torch.stack(terms).mean() if terms else None

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        if self.bias_rate == 0:
            return
        for m in self.modules:
            if m.last_load is not None:
                m.route_bias += self.bias_rate * torch.sign(m.last_load.mean() - m.last_load)
