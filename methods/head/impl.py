"""Linear probe: nothing but the task head trains."""

from __future__ import annotations

from suite.methods.adapters import load_state_strict, trainable_state
from suite.methods.api import Method, Prepared


class Head(Method):
    def prepare(self, model, ctx) -> Prepared:
        # The generic runner has already frozen the backbone and left the head trainable.
        return Prepared(
            model=model,
            adapter_state=lambda: trainable_state(model),
            load_adapter_state=lambda s: load_state_strict(model, s),
        )

    def expected_trainable_params(self, shapes) -> int:
        return 0
