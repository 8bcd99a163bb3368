"""MoLE-style top-1 mixture of LoRA experts: y = W0 x + s p_e(x) B_e A_e x,
e = argmax_e (W_g x)_e, p = softmax(W_g x), with Switch Transformer's load-balancing loss."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from suite.methods.adapters import adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.gated_lora import GatedLoRALinear, RouterHooks


class MoLEParams(MethodParams):
    experts: int = Field(default=4, ge=2)
    r: PositiveInt = 4
    alpha: PositiveFloat = 8
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    targets: str | list[str] = "qv"
    aux_loss_weight: NonNegativeFloat = 0.01


class MoLE(Method):
    Params = MoLEParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        wrapped = wrap_targets(
            model,
            patterns,
            lambda name, lin: GatedLoRALinear(
                lin, p.experts, p.r, top_k=1, scaling=p.alpha / p.r, dropout=p.dropout
            ),
        )
        hooks = RouterHooks([m for _, m in wrapped], p.aux_loss_weight, bias_rate=0.0)
        return adapter_prepared(model, hooks, mergeable=False)

    def expected_trainable_params(self, shapes) -> int:
        # E experts of r (d_in + d_out) plus the router W_g (E x d_in).
        p = self.params
        return sum(p.experts * (p.r * (d_in + d_out) + d_in) for d_out, d_in in shapes)
