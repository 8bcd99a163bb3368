"""Full fine-tuning: every parameter trains; the 'adapter' is the whole model."""

from __future__ import annotations

from suite.methods.adapters import load_state_strict, trainable_state
from suite.methods.api import Method, Prepared


class Full(Method):
    def prepare(self, model, ctx) -> Prepared:
        for p in model.parameters():
            p.requires_grad_(True)
        return Prepared(
            model=model,
            adapter_state=lambda: trainable_state(model),
            load_adapter_state=lambda s: load_state_strict(model, s),
        )

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError("full fine-tuning counts every backbone weight, not targets")
