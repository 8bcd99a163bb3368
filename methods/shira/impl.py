"""SHiRA: a sparse high-rank adapter on a fixed mask, values initialised to zero.

Follows Hugging Face PEFT 0.21 `tuners/shira` (budget r(d_in + d_out) per layer, zero
init, random mask from a permutation whose generator is re-seeded for every layer, so
same-shape layers share a mask; checked live by tests/test_golden_shira.py). The
weight-magnitude, gradient and SNIP masks are the paper's SHiRA-WM / -Grad / -SNIP
variants, implemented from their usual definitions (top |W0|, top |sum of gradients|,
top |W0 * gradient| on a few training batches); PEFT ships only the random mask and the
paper's own code was not read.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from suite.methods.adapters import TargetedParams, adapter_prepared
from suite.methods.api import Method, Prepared
from suite.methods.sparse import (
    MaskKind,
    budget,
    load_sparse_state,
    select_masks,
    sparse_state,
    wrap_sparse,
)
from suite.methods.targets import find_targets


class ShiraParams(TargetedParams):
    r: PositiveInt = 8
    density: float | None = Field(default=None, gt=0.0, le=1.0)
    mask: MaskKind = "random"
    mask_batches: PositiveInt = 4

    def shape_issues(self, shapes: list[tuple[int, int]]) -> dict[str, str]:
        issues = super().shape_issues(shapes)
        for d_out, d_in in shapes:
            try:
                budget(d_out, d_in, self.r, self.density)
            except ValueError as exc:
                issues.setdefault("density" if self.density is not None else "r", str(exc))
        return issues


class Shira(Method):
    Params = ShiraParams

    def _k(self, d_out: int, d_in: int) -> int:
        return budget(d_out, d_in, self.params.r, self.params.density)

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        targets = find_targets(model.backbone, patterns)
        ks = {n: self._k(*lin.weight.shape) for n, lin in targets}
        masks = select_masks(model, targets, ks, p.mask, ctx, p.mask_batches)
        wrap_sparse(model, patterns, lambda name, _: masks[name])
        prepared = adapter_prepared(model)
        prepared.adapter_state = lambda: sparse_state(model)
        prepared.load_adapter_state = lambda state: load_sparse_state(model, state)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        return sum(self._k(d_out, d_in) for d_out, d_in in shapes)
