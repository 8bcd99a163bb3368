"""LoRA-Mixer (Li et al., arXiv 2507.00029), as reconstructed here (no code has been
released; see method.yaml for what was read):

- the attention module's input and output projections (`targets`, default the preset's
  `attention` family: q, k, v and the output projection) each get E LoRA experts of rank
  r and a router, y = W0 x + s sum_e g_e(x) B_e A_e dropout(x), p = softmax(W_g x);
- hard-soft routing: g = p in training (soft fusion of every expert), the top-k of p
  renormalised at evaluation (sparse fusion); `routing: topk` uses the sparse gate in
  training as well;
- the routing specialisation loss: balance_weight * E * sum_e f_e P_e + entropy_weight *
  mean token entropy of p (suite/methods/gated_lora.py's SpecializationLossHooks).
Not mergeable (input-dependent gates).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from suite.methods.adapters import TargetedParams, adapter_prepared, wrap_targets
from suite.methods.api import Method, Prepared, at_most
from suite.methods.gated_lora import SoftTopKExpertLoRALinear, SpecializationLossHooks


class LoRAMixerParams(TargetedParams):
    rank_fields = ("r",)
    experts: int = Field(default=4, ge=2)
    r: PositiveInt = 8
    top_k: PositiveInt = 2
    alpha: PositiveFloat = 16
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    routing: Literal["hard-soft", "topk"] = "hard-soft"
    balance_weight: NonNegativeFloat = 0.01
    entropy_weight: float = 0.01  # negative: Eq. 5's sign as the reviewers quote it
    targets: str | list[str] = "attention"

    _k_within_experts = at_most("top_k", "experts")


class LoRAMixer(Method):
    Params = LoRAMixerParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        wrapped = wrap_targets(
            model,
            ctx.preset.resolve_targets(p.targets),
            lambda _, lin: SoftTopKExpertLoRALinear(
                lin, p.experts, p.r, p.top_k, p.alpha / p.r, p.dropout, p.routing
            ),
        )
        modules = [m for _, m in wrapped]
        hooks = SpecializationLossHooks(modules, p.balance_weight, p.entropy_weight)
        return adapter_prepared(model, hooks, mergeable=False)

    def expected_trainable_params(self, shapes) -> int:
        # E experts of r (d_in + d_out) plus the router W_g (E x d_in) per target.
        p = self.params
        return sum(p.experts * (p.r * (d_in + d_out) + d_in) for d_out, d_in in shapes)
