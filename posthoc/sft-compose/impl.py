"""Composable sparse fine-tuning: the sparse task deltas add (composable-sft's SFT.apply)."""

from __future__ import annotations

from pydantic import Field

from suite.posthoc.api import Merged, MergeMethod, PosthocParams
from suite.posthoc.merging import compact, summed


class SftComposeParams(PosthocParams):
    # A weight per task delta (composable-sft adds each once: None is 1 for every task).
    weights: list[float] | None = Field(default=None, min_length=1)


class SftCompose(MergeMethod):
    Params = SftComposeParams

    def merge(self, updates, ctx) -> Merged:
        weights = self.params.weights or [1.0] * len(updates)
        if len(weights) != len(updates):
            raise ValueError(f"{len(weights)} weights for {len(updates)} task updates")
        shared = summed(updates, weights)
        return Merged(stored=compact(shared), shared=shared)
