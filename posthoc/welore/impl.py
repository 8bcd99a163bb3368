"""WeLore: data-free low-rank reduction by a global threshold on normalised spectra."""

from __future__ import annotations

from pydantic import Field

from suite.plugins import sibling_names
from suite.posthoc.api import Compressed, CompressMethod, PosthocParams

# This method's own maths, in this folder (lowrank.py).
apply_plan, singular_values, threshold_for, welore_plan = sibling_names(
    __file__, "lowrank.py", "apply_plan", "singular_values", "threshold_for", "welore_plan"
)


class WeLoreParams(PosthocParams):
    # Share of the targets' total rank to remove (used when no threshold is given).
    reduction: float = Field(default=0.5, gt=0.0, lt=1.0)
    threshold: float | None = Field(default=None, gt=0.0, lt=1.0)
    min_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    targets: str | list[str] = "all-linear"


class WeLore(CompressMethod):
    Params = WeLoreParams

    def compress(self, model, ctx) -> Compressed:
        p = self.params
        targets = ctx.resolve(p.targets)
        weights = [(name, module.weight) for name, module in targets]
        tau = p.threshold
        if tau is None:
            tau = threshold_for([singular_values(w) for _, w in weights], p.reduction)
        plan = welore_plan(weights, tau, p.min_ratio)
        before = sum(w.numel() for _, w in weights)
        after = sum(
            d.kept * sum(w.shape) if d.low_rank else w.numel()
            for d, (_, w) in zip(plan, weights, strict=True)
        )
        apply_plan(model.backbone, plan)
        removed = sum(d.pruned for d in plan if d.low_rank)
        total_rank = sum(d.rank for d in plan)
        return Compressed(
            pruned=before - after,
            total=before,
            level=p.reduction if p.threshold is None else removed / total_rank,
            level_label=f"rank -{p.reduction:.0%}" if p.threshold is None else f"tau {tau:.3g}",
            notes=f"tau {tau:.6g}; rank removed {removed} of {total_rank}; "
            f"{sum(d.low_rank for d in plan)} of {len(plan)} matrices low-rank",
        )
