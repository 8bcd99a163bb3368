"""LoRA with an input-dependent gate on blocks of its rank, shared by SMoRA (a block = one
rank) and LoRA-Mixer's top-k mixture (a block = one expert's r ranks).

A mixture of E LoRA experts of rank r is one LoRA of rank E*r whose rank blocks are
switched by a router (the equivalence SMoRA's paper builds on), so both methods use one
pair of matrices:

    y = W0 x + s B (expand(g(x)) * A dropout(x))

and differ only in the gate g:

- SMoRA (`RankGatedLoRALinear`, the authors' srmole layer, StyxXuan/smora): scores
  sigmoid(W_g dropout(x)) + b, keep the top-k ranks, renormalise the kept scores to sum 1
  and multiply by k; s = alpha / k. The bias b balances the load: every training forward
  adds rate * sign(mean count - count_i) (computed from that forward's selection, after
  the selection and before the next forward). The authors' PEFT wrapper also leaves b
  trainable, so by default it receives gradients through the gate values as well.
- Top-k mixture (`SoftTopKExpertLoRALinear`, LoRA-Mixer): p = softmax(W_g x), each token
  uses its top-k experts, with a load-balancing loss (`BalanceLossHooks`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods.adapters import AdapterLinear, trainable_state
from suite.methods.api import StepHooks


class GatedLoRALinear(AdapterLinear):
    """A frozen linear plus a LoRA whose `experts` rank blocks are gated per token.

    Subclasses define `_route(x, x_dropped)`: the (..., experts) gates of one forward,
    with any side effect a training forward has (load statistics, bias updates).
    """

    def __init__(
        self,
        base: nn.Linear,
        experts: int,
        block_rank: int,
        scaling: float,
        dropout: float = 0.0,
    ):
        super().__init__(base)
        self.experts, self.block_rank, self.scaling = experts, block_rank, scaling
        dtype, device = base.weight.dtype, base.weight.device
        rank = experts * block_rank
        # Created in the reference's order (A, B, router; then A's init), so a seeded
        # build draws the same numbers as srmole's update_layer.
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, dtype=dtype, device=device)
        self.router = nn.Linear(base.in_features, experts, bias=False, dtype=dtype, device=device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # the model is unchanged at init
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _route(self, x: torch.Tensor, x_dropped: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(..., experts) gate values for `x`, without a training forward's side effects."""
        raise NotImplementedError

    def update(self, x: torch.Tensor) -> torch.Tensor:
        x_dropped = self.dropout(x)
        gate = self._route(x, x_dropped).to(x.dtype)
        gate = gate.repeat_interleave(self.block_rank, dim=-1)
        return self.lora_B(self.lora_A(x_dropped) * gate) * self.scaling


class RankGatedLoRALinear(GatedLoRALinear):
    """SMoRA: each of r ranks is an expert; top-k of sigmoid(W_g dropout(x)) + b.

    The gate of a kept rank is its score over the sum of the kept scores, times k (so the
    kept gates sum to k); scaling alpha / k is the caller's. srmole layer.py:156-183.
    """

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        top_k: int,
        scaling: float,
        dropout: float = 0.0,
        bias_update_rate: float = 1e-5,
        train_bias: bool = True,
    ):
        if not 1 <= top_k <= r:
            raise ValueError(f"top_k must be in [1, {r}], got {top_k}")
        super().__init__(base, r, 1, scaling, dropout)
        self.top_k, self.bias_update_rate = top_k, bias_update_rate
        # A parameter either way (the reference's lora_biases), so on bf16/fp16 bases the
        # runner's adapter cast keeps it in fp32 and 1e-5 steps are not rounded away.
        bias = torch.zeros(r, dtype=base.weight.dtype, device=base.weight.device)
        self.route_bias = nn.Parameter(bias, requires_grad=train_bias)

    def _scores(self, x_dropped: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.router(x_dropped)) + self.route_bias

    def _gates_from(self, top: torch.Tensor, chosen: torch.Tensor, like: torch.Tensor):
        sparse = torch.zeros_like(like).scatter(-1, chosen, top)
        return sparse / sparse.sum(dim=-1, keepdim=True) * self.top_k

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        scores = self._scores(x)
        top, chosen = scores.topk(self.top_k, dim=-1)
        return self._gates_from(top, chosen, scores)

    def _route(self, x: torch.Tensor, x_dropped: torch.Tensor) -> torch.Tensor:
        scores = self._scores(x_dropped)
        top, chosen = scores.topk(self.top_k, dim=-1)
        if self.training and self.bias_update_rate:
            with torch.no_grad():
                counts = torch.bincount(chosen.reshape(-1), minlength=self.experts).float()
                step = self.bias_update_rate * torch.sign(counts.mean() - counts)
                self.route_bias.add_(step.to(self.route_bias.dtype))
        return self._gates_from(top, chosen, scores)


class BalanceLossHooks(StepHooks):
    """weight * mean over modules of E * sum_e f_e P_e (f_e: fraction of the tokens routed
    to expert e, P_e: mean router probability; Switch Transformer's normalisation of
    the sum_j c_j p_j balancing loss). Only P_e carries gradient."""

    def __init__(self, modules: list[GatedLoRALinear], weight: float):
        self.modules, self.weight = modules, weight

    def extra_loss(self) -> torch.Tensor | None:
        if self.weight == 0:
            return None
        terms = [
            m.experts * (m.last_load * m.last_probs).sum()
            for m in self.modules
            if m.last_load is not None
        ]
        return self.weight * torch.stack(terms).mean() if terms else None


class SoftTopKExpertLoRALinear(GatedLoRALinear):
    """LoRA-Mixer's routed experts (the project's reading of arXiv 2507.00029): p =
    softmax(W_g x) over E experts of rank r. "Hard-soft" routing: training fuses every
    expert by p (soft, so every expert and the router get gradients), evaluation keeps
    the top-k and renormalises them (sparse); `routing="topk"` uses the sparse gate in
    training too. A training forward records, for `SpecializationLossHooks`, the share of
    top-k selections per expert, the mean router probability and the mean entropy."""

    def __init__(
        self,
        base: nn.Linear,
        experts: int,
        r: int,
        top_k: int,
        scaling: float,
        dropout: float = 0.0,
        routing: str = "hard-soft",
    ):
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k must be in [1, {experts}], got {top_k}")
        super().__init__(base, experts, r, scaling, dropout)
        self.top_k, self.routing = top_k, routing
        self.last_load: torch.Tensor | None = None
        self.last_probs: torch.Tensor | None = None
        self.last_entropy: torch.Tensor | None = None

    def _topk(self, probs: torch.Tensor) -> torch.Tensor:
        top, chosen = probs.topk(self.top_k, dim=-1)
        sparse = torch.zeros_like(probs).scatter(-1, chosen, top)
        return sparse / sparse.sum(dim=-1, keepdim=True)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        return self._topk(F.softmax(self.router(x).float(), dim=-1))

    def _route(self, x: torch.Tensor, x_dropped: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(self.router(x).float(), dim=-1)
        sparse = self._topk(probs)
        if not self.training:
            return sparse
        flat = probs.reshape(-1, self.experts)
        selected = (sparse.reshape(-1, self.experts) > 0).float()
        self.last_load = (selected.sum(0) / selected.sum()).detach()
        self.last_probs = flat.mean(0)
        self.last_entropy = -(flat * torch.log(flat.clamp_min(1e-12))).sum(-1).mean()
        return probs if self.routing == "hard-soft" else sparse


class SpecializationLossHooks(BalanceLossHooks):
    """LoRA-Mixer's routing specialisation loss, as read: balance_weight * E * sum_e f_e
    P_e (BalanceLossHooks' term, f_e from the top-k selections) + entropy_weight * mean
    token entropy of p, averaged over modules. A positive entropy weight sharpens the
    routing (the paper's stated aim); its Eq. 5 as quoted by reviewers subtracts the
    entropy term, which a negative weight reproduces."""

    def __init__(self, modules, balance_weight: float, entropy_weight: float):
        super().__init__(modules, balance_weight)
        self.entropy_weight = entropy_weight

    def extra_loss(self) -> torch.Tensor | None:
        balance = super().extra_loss()
        terms = [m.last_entropy for m in self.modules if m.last_entropy is not None]
        if not self.entropy_weight or not terms:
            return balance
        entropy = self.entropy_weight * torch.stack(terms).mean()
        return entropy if balance is None else balance + entropy


def gated_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors plus every routing bias (state even when not trained)."""
    state = trainable_state(model)
    for name, tensor in model.named_parameters():
        if name.endswith("route_bias"):
            state[name] = tensor.detach().clone()
    return state
