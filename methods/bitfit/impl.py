"""BitFit: train the backbone's bias terms only."""

from __future__ import annotations

from suite.methods.adapters import load_state_strict, trainable_state
from suite.methods.api import Method, Prepared


class BitFit(Method):
    def prepare(self, model, ctx) -> Prepared:
        for name, p in model.backbone.named_parameters():
            p.requires_grad_(name.endswith(".bias") or name == "bias")
        return Prepared(
            model=model,
            adapter_state=lambda: trainable_state(model),
            load_adapter_state=lambda s: load_state_strict(model, s),
        )

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError("BitFit trains every backbone bias, not per-target weights")
