"""Task arithmetic: theta_0 + lambda * sum_t tau_t."""

from __future__ import annotations

from pydantic import PositiveFloat

from suite.posthoc.api import Merged, MergeMethod, PosthocParams
from suite.posthoc.merging import compact, concatenated, summed


class TaskArithmeticParams(PosthocParams):
    scale: PositiveFloat = 1.0


class TaskArithmetic(MergeMethod):
    Params = TaskArithmeticParams

    def merge(self, updates, ctx) -> Merged:
        weights = [self.params.scale] * len(updates)
        shared = summed(updates, weights)
        return Merged(stored=concatenated(updates, weights) or compact(shared), shared=shared)
