"""Reversible Model Merging: a per-position basis from which each task's LoRA is rebuilt."""

from __future__ import annotations

from pydantic import PositiveInt

from suite.plugins import sibling_names
from suite.posthoc.api import Merged, MergeMethod, PosthocParams

# This method's own maths, in this folder (rmm.py).
factor_positions, positions_to_factors, rmm_rebuild, rmm_store = sibling_names(
    __file__, "rmm.py", "factor_positions", "positions_to_factors", "rmm_rebuild", "rmm_store"
)


class RMMParams(PosthocParams):
    p: PositiveInt = 1
    center: bool = True


class RMM(MergeMethod):
    Params = RMMParams

    def merge(self, updates, ctx) -> Merged:
        per_task: list[dict] = [{} for _ in updates]
        stored = {}
        for name in sorted(updates[0].factors):
            factors = [u.factors[name] for u in updates]
            ranks = {b.shape[1] for b, _ in factors}
            if len(ranks) != 1:
                raise ValueError(f"RMM needs LoRAs of one rank; {name} has ranks {sorted(ranks)}")
            store = rmm_store(factor_positions(factors), min(self.params.p, len(updates)),
                              self.params.center)  # fmt: skip
            stored.update({f"{name}.{k}": v.contiguous() for k, v in store.items()})
            d_out = factors[0][0].shape[0]
            for t in range(len(updates)):
                b, a = positions_to_factors(rmm_rebuild(store, t), d_out)
                per_task[t][name] = b @ a
        return Merged(stored=stored, per_task=per_task)
