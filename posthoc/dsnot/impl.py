"""DSnoT: Wanda's mask, then per-row regrow/prune swaps that cancel the output shift."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveInt

from suite.methods.targets import matches
from suite.posthoc.methods import PruningMethod, PruningParams
from suite.posthoc.pruning import DSnoTOptions, PruneRule, parse_pattern


class DSnoTParams(PruningParams):
    # Sublayers left at Wanda's mask: a preset family ("mlp", the reference's default) or
    # module names; None runs DSnoT on every target.
    skip: str | list[str] | None = "mlp"
    update_threshold: NonNegativeFloat = 0.1
    max_cycles: PositiveInt = 50
    var_power: float = Field(default=1.0, ge=0.0)
    same_sign: bool = False


class DSnoT(PruningMethod):
    Params = DSnoTParams

    def rule(self) -> PruneRule:
        p = self.params
        opts = DSnoTOptions(p.update_threshold, p.max_cycles, p.var_power, p.same_sign)
        return PruneRule("dsnot", p.sparsity or 0.5, parse_pattern(p.pattern), "row", opts)

    def skip(self, ctx):
        if self.params.skip is None:
            return lambda name: False
        patterns = ctx.preset.resolve_targets(self.params.skip)
        return lambda name: any(matches(name, pat) for pat in patterns)
