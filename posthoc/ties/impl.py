"""TIES-merging of task vectors (trim, elect sign, disjoint merge), per tensor or per model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat

from suite.plugins import sibling_names
from suite.posthoc.api import Merged, MergeMethod, PosthocParams
from suite.posthoc.merging import compact

# This method's own maths, in this folder (ties.py).
ties, ties_model = sibling_names(__file__, "ties.py", "ties", "ties_model")


class TiesParams(PosthocParams):
    density: float = Field(default=0.2, gt=0.0, le=1.0)
    scale: PositiveFloat = 1.0
    trim: Literal["tensor", "model"] = "tensor"


class Ties(MergeMethod):
    Params = TiesParams

    def merge(self, updates, ctx) -> Merged:
        p = self.params
        weights = [p.scale] * len(updates)
        if p.trim == "model":
            shared = ties_model([u.deltas for u in updates], weights, p.density)
        else:
            names = sorted({n for u in updates for n in u.deltas})
            shared = {}
            for name in names:
                like = next(u.deltas[name] for u in updates if name in u.deltas)
                tensors = [u.deltas.get(name, like.new_zeros(like.shape)) for u in updates]
                shared[name] = ties(tensors, weights, p.density)
        return Merged(stored=compact(shared), shared=shared)
