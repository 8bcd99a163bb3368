"""LLaVA-MoLE-style sparse mixture of LoRA experts (Chen et al., arXiv 2401.16160), as
reconstructed here (no code or method text could be read; see method.yaml):

- each MLP projection (`targets`, default the preset's `mlp` family) gets E LoRA experts
  and its own router; each token uses only its top-1 expert, y = W0 x + s B_e A_e x,
  e = argmax softmax(W_g x) (unweighted; `weight_by_prob` scales it by p_e instead);
- the other projections (`lora_targets`, default `attention`) get one plain LoRA;
- a balancing loss weight * E * sum_e f_e P_e keeps the experts in use (it is the only
  signal the router learns from when the output is unweighted).
"""

from __future__ import annotations

import math

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.gated_lora import BalanceLossHooks, Top1ExpertLoRALinear


class MoLEParams(MethodParams):
    rank_fields = ("r",)
    experts: int = Field(default=4, ge=2)
    r: PositiveInt = 4
    alpha: PositiveFloat = 8
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    targets: str | list[str] = "mlp"  # projections that get experts
    lora_targets: str | list[str] = "attention"  # projections that get a plain LoRA ([]: none)
    aux_loss_weight: NonNegativeFloat = 0.01
    weight_by_prob: bool = False


class PlainLoRALinear(AdapterLinear):
    """y = W0 x + (alpha / r) B A dropout(x); PEFT's LoRA init (Kaiming-uniform A, zero B)."""

    def __init__(self, base: nn.Linear, p: MoLEParams):
        super().__init__(base)
        self.scaling = p.alpha / p.r
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_A = nn.Linear(base.in_features, p.r, bias=False, dtype=dtype, device=device)
        self.lora_B = nn.Linear(p.r, base.out_features, bias=False, dtype=dtype, device=device)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()

    def update(self, x):
        return self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    def delta_weight(self):
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling


class MoLE(Method):
    Params = MoLEParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        wrapped = wrap_targets(
            model,
            ctx.preset.resolve_targets(p.targets),
            lambda name, lin: Top1ExpertLoRALinear(
                lin, p.experts, p.r, p.alpha / p.r, p.dropout, p.weight_by_prob
            ),
        )
        plain = ctx.preset.resolve_targets(p.lora_targets)
        if plain:
            wrap_targets(model, plain, lambda name, lin: PlainLoRALinear(lin, p))
        hooks = BalanceLossHooks([m for _, m in wrapped], p.aux_loss_weight)
        return adapter_prepared(model, hooks, mergeable=False)

    def expected_trainable_params(self, shapes) -> int:
        # Per expert target: E experts of r (d_in + d_out) plus the router W_g (E x d_in).
        # (The plain LoRAs on lora_targets add r (d_in + d_out) each; they are not in
        # `shapes`, which lists the expert targets.)
        p = self.params
        return sum(p.experts * (p.r * (d_in + d_out) + d_in) for d_out, d_in in shapes)
