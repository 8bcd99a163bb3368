"""Wanda: |W| x input-norm scores, pruned per row or to an N:M pattern."""

from __future__ import annotations

from suite.posthoc.methods import PruningMethod, PruningParams
from suite.posthoc.pruning import PruneRule, parse_pattern


class Wanda(PruningMethod):
    Params = PruningParams

    def rule(self) -> PruneRule:
        p = self.params
        return PruneRule("wanda", p.sparsity or 0.5, parse_pattern(p.pattern))
