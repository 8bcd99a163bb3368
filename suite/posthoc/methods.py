"""Shared bases of the built-in compress methods (posthoc/<name>/impl.py subclass them).

`PruningMethod`: prune the targeted linears block by block to a per-row sparsity or an
N:M pattern under one PruneRule (magnitude, Wanda, DSnoT), from calibration statistics
when the rule reads activations.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from suite.posthoc.api import CompressContext, Compressed, CompressMethod, PosthocParams
from suite.posthoc.calibrate import prune_blocks, sparsity_of
from suite.posthoc.pruning import PruneRule, parse_pattern


class PruningParams(PosthocParams):
    # Unstructured per-row sparsity, or an N:M pattern ("2:4": keep 2 of every 4 inputs).
    sparsity: float | None = Field(default=0.5, gt=0.0, lt=1.0)
    pattern: str | None = None
    targets: str | list[str] = "all-linear"

    @model_validator(mode="after")
    def _one_level(self) -> PruningParams:
        if self.pattern is not None:
            parse_pattern(self.pattern)
        elif self.sparsity is None:
            raise ValueError("give a sparsity or an n:m pattern")
        return self


class PruningMethod(CompressMethod):
    Params: ClassVar[type[PosthocParams]] = PruningParams

    def rule(self) -> PruneRule:
        raise NotImplementedError

    def skip(self, ctx: CompressContext):
        """Sublayers the rule leaves at its initial mask (DSnoT's --skip_layer)."""
        return lambda name: False

    def compress(self, model, ctx: CompressContext) -> Compressed:
        p = self.params
        targets = ctx.resolve(p.targets)
        rule = self.rule()
        masks = prune_blocks(targets, rule, ctx.calibration, skip=self.skip(ctx))
        pruned, total = sparsity_of(masks.values())
        pattern = parse_pattern(p.pattern)
        level = (1 - pattern[0] / pattern[1]) if pattern else p.sparsity
        return Compressed(
            pruned=pruned,
            total=total,
            level=level,
            level_label=p.pattern or f"{p.sparsity:.0%}",
            sparse={f"backbone.{name}.weight": pattern for name, _ in targets},
        )
