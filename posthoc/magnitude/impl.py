"""Magnitude pruning: the smallest |W| per row (or per matrix), or an N:M pattern."""

from __future__ import annotations

from typing import Literal

from suite.posthoc.methods import PruningMethod, PruningParams
from suite.posthoc.pruning import PruneRule, parse_pattern


class MagnitudeParams(PruningParams):
    scope: Literal["row", "matrix"] = "row"


class Magnitude(PruningMethod):
    Params = MagnitudeParams

    def rule(self) -> PruneRule:
        p = self.params
        return PruneRule("magnitude", p.sparsity or 0.5, parse_pattern(p.pattern), p.scope)
