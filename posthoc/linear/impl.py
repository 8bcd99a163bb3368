"""Linear averaging of task updates (uniform weights unless given)."""

from __future__ import annotations

from pydantic import Field

from suite.posthoc.api import Merged, MergeMethod, PosthocParams
from suite.posthoc.merging import compact, concatenated, summed


class LinearParams(PosthocParams):
    # One weight per source task, in the stage's task order; None: 1 / T each.
    weights: list[float] | None = Field(default=None, min_length=1)


class Linear(MergeMethod):
    Params = LinearParams

    def merge(self, updates, ctx) -> Merged:
        weights = self.params.weights or [1.0 / len(updates)] * len(updates)
        if len(weights) != len(updates):
            raise ValueError(f"{len(weights)} weights for {len(updates)} task updates")
        shared = summed(updates, weights)
        return Merged(stored=concatenated(updates, weights) or compact(shared), shared=shared)
