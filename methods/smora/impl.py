"""SMoRA, following the authors' srmole layer (StyxXuan/smora, packages/peft/src/peft/
tuners/srmole/layer.py): every rank of a LoRA is an expert,

    y = W0 x + (alpha / k) B diag(g(x)) A dropout(x),
    g(x) = k * topk(sigmoid(W_g dropout(x)) + b) / sum(topk(...)),

with b a load-balancing bias moved by rate * sign(mean count - count) every training
forward (and, as in the reference's PEFT wrapper, also trained by the optimiser)."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from suite.methods.adapters import TargetedParams, adapter_prepared, load_state_strict, wrap_targets
from suite.methods.api import Method, Prepared, at_most
from suite.methods.gated_lora import RankGatedLoRALinear, gated_state


class SMoRAParams(TargetedParams):
    rank_fields = ("r",)
    r: int = Field(default=16, ge=2)
    top_k: PositiveInt = 8  # srmole's activate_r
    alpha: PositiveFloat = 16
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    bias_update_rate: NonNegativeFloat = 1e-5  # srmole's default, never overridden there
    # The reference's bias is requires_grad (PEFT's set_adapter), so AdamW trains it too;
    # false keeps it a pure sign-updated balancing term (the paper's description).
    train_bias: bool = True

    _k_within_r = at_most("top_k", "r")


class SMoRA(Method):
    Params = SMoRAParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        wrap_targets(
            model,
            patterns,
            lambda name, lin: RankGatedLoRALinear(
                lin,
                p.r,
                p.top_k,
                scaling=p.alpha / p.top_k,  # srmole: lora_alpha / activate_r
                dropout=p.dropout,
                bias_update_rate=p.bias_update_rate,
                train_bias=p.train_bias,
            ),
        )
        prepared = adapter_prepared(model, mergeable=False)
        prepared.adapter_state = lambda: gated_state(model)
        prepared.load_adapter_state = lambda state: load_state_strict(model, state)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # LoRA r (d_in + d_out), the rank router W_g (r x d_in) and, trained, the bias (r).
        bias = self.params.r if self.params.train_bias else 0
        return sum(self.params.r * (2 * d_in + d_out) + bias for d_out, d_in in shapes)
