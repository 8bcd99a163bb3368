"""SMoRA: every rank of a LoRA is an expert; y = W0 x + s B diag(g(x)) A x with g(x)
keeping the top-k of r router scores, balanced by an untrained routing bias."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from suite.methods.adapters import adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.gated_lora import GatedLoRALinear, RouterHooks


class SMoRAParams(MethodParams):
    r: int = Field(default=16, ge=2)
    top_k: PositiveInt = 8
    alpha: PositiveFloat = 32
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)
    targets: str | list[str] = "qv"
    bias_update_rate: NonNegativeFloat = 1e-3

    @model_validator(mode="after")
    def _k_below_r(self) -> SMoRAParams:
        if self.top_k > self.r:
            raise ValueError(f"top_k ({self.top_k}) must not exceed r ({self.r})")
        return self


class SMoRA(Method):
    Params = SMoRAParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        wrapped = wrap_targets(
            model,
            patterns,
            lambda name, lin: GatedLoRALinear(
                lin, p.r, 1, top_k=p.top_k, scaling=p.alpha / p.r, dropout=p.dropout
            ),
        )
        hooks = RouterHooks([m for _, m in wrapped], aux_weight=0.0, bias_rate=p.bias_update_rate)
        return adapter_prepared(model, hooks, mergeable=False)

    def expected_trainable_params(self, shapes) -> int:
        # LoRA r (d_in + d_out) plus the rank router W_g (r x d_in).
        return sum(self.params.r * (2 * d_in + d_out) for d_out, d_in in shapes)
