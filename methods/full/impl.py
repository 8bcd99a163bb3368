"""Full fine-tuning: every parameter trains; the 'adapter' is the whole model."""

from __future__ import annotations

from suite.methods.api import Method, Prepared
from suite.methods.optimizers import optimizer_prepared


class Full(Method):
    def prepare(self, model, ctx) -> Prepared:
        return optimizer_prepared(model)

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError("full fine-tuning counts every backbone weight, not targets")
