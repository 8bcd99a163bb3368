"""The bottleneck adapter baseline (Houlsby et al. 2019; Pfeiffer et al. 2020 as an option),
as adapter-hub/adapters defines it (DoubleSeqBnConfig / SeqBnConfig and its `Adapter`
module): at each targeted sublayer output, h -> h + s W_up act(W_down h + b_down) + b_up,
inside the sublayer's residual and LayerNorm. See suite/methods/bottleneck.py for the
insertion point against the library's. Not mergeable (the bottleneck is non-linear)."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt

from suite.methods.adapters import adapter_prepared, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.bottleneck import (
    DEFAULT_ACT,
    SUBLAYER_OUTPUTS,
    BottleneckLinear,
    attach_to_sublayer,
    bottleneck_size,
    init_projections,
)


class AdapterParams(MethodParams):
    style: Literal["houlsby", "pfeiffer"] = "houlsby"
    reduction_factor: PositiveFloat = 16  # the library's default for both configs
    bottleneck: PositiveInt | None = None  # overrides reduction_factor
    non_linearity: str | None = None  # None: the style's (swish / relu)
    init: Literal["bert", "houlsby", "mam_adapter"] = "bert"  # the library's default
    scaling: PositiveFloat = 1.0
    # None: the style's sublayer outputs (both for Houlsby, the FFN's for Pfeiffer).
    targets: str | list[str] | None = None


def adapter_targets(p, preset) -> list[str]:
    return SUBLAYER_OUTPUTS[p.style] if p.targets is None else preset.resolve_targets(p.targets)


class Adapter(Method):
    Params = AdapterParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        act = p.non_linearity or DEFAULT_ACT[p.style]
        gen = ctx.generator()

        def build(name, lin):
            size = bottleneck_size(lin.out_features, p.reduction_factor, p.bottleneck)
            layer = BottleneckLinear(lin, size, p.style, act, p.scaling)
            init_projections(layer.adapter_down, layer.adapter_up, p.init, gen)
            return layer

        wrapped = wrap_targets(model, adapter_targets(p, ctx.preset), build)
        if p.style == "pfeiffer":
            for name, layer in wrapped:
                attach_to_sublayer(model, name, layer)
        return adapter_prepared(model, mergeable=False)

    def expected_trainable_params(self, shapes) -> int:
        p = self.params
        total = 0
        for d_out, _ in shapes:
            m = bottleneck_size(d_out, p.reduction_factor, p.bottleneck)
            total += 2 * d_out * m + m + d_out
        return total
