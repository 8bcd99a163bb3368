"""LoRA-LEGO: rank-wise k-means over the source LoRAs' units (the project's reading)."""

from __future__ import annotations

from pydantic import PositiveInt

from suite.plugins import sibling_names
from suite.posthoc.api import Merged, MergeMethod, PosthocParams

# This method's own maths, in this folder (lego.py).
(lego_merge,) = sibling_names(__file__, "lego.py", "lego_merge")


class LoraLegoParams(PosthocParams):
    # Merged rank; None: the mean rank of the source LoRAs.
    k: PositiveInt | None = None
    reweight_params: bool = True
    reweight_output: bool = True


class LoraLego(MergeMethod):
    Params = LoraLegoParams

    def merge(self, updates, ctx) -> Merged:
        p = self.params
        gen = ctx.generator()
        shared, stored = {}, {}
        for name in sorted(updates[0].factors):
            factors = [u.factors[name] for u in updates]
            k = p.k or round(sum(b.shape[1] for b, _ in factors) / len(factors))
            b, a = lego_merge(factors, k, gen, p.reweight_params, p.reweight_output)
            shared[name] = b @ a
            stored[f"{name}.B"], stored[f"{name}.A"] = b, a
        return Merged(stored=stored, shared=shared)
