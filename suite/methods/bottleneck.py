"""Bottleneck adapters at the sublayer outputs of an encoder (shared by `adapter`, MoSA).

The bottleneck is adapter-hub/adapters' `Adapter` (methods/modeling.py): f(h) =
s * W_up act(W_down h + b_down) + b_up, with a residual around it. Where it sits, as the
library's BERT integration does it (the sublayer computes h = dropout(dense(x)) and then
`bottleneck_layer_forward(h, input_tensor, LayerNorm)`):

- Houlsby (the library's DoubleSeqBnConfig): after the attention output and after the FFN
  output, out = LN(h + f(h) + input_tensor);
- Pfeiffer (SeqBnConfig): after the FFN output only, with the sublayer's LayerNorm applied
  to the adapter input first, out = LN(h + input_tensor + f(LN(h + input_tensor))).

Here the adapter wraps the sublayer's output `dense` (so the method contract's target
patterns find it) and returns dense(x) + f(.); the sublayer then applies its own dropout,
residual and LayerNorm. The one difference from the library is the order against the
sublayer's hidden dropout: the library feeds dropout(dense(x)) to f, this wrapper feeds
dense(x) and the dropout acts on the sum. They agree whenever dropout is inactive
(evaluation, or hidden_dropout_prob 0). For Pfeiffer the sublayer's `input_tensor` is
taken by a forward pre-hook on the sublayer (the library does the same for its hooked
models, `_residual_hook_fn`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods.adapters import AdapterLinear

Style = Literal["houlsby", "pfeiffer"]
Init = Literal["bert", "houlsby", "mam_adapter"]
# The library's defaults per config: DoubleSeqBn (Houlsby) swish, SeqBn (Pfeiffer) relu.
DEFAULT_ACT = {"houlsby": "swish", "pfeiffer": "relu"}
# The library's sublayer outputs for BERT-style encoders (attention output, FFN output).
SUBLAYER_OUTPUTS = {
    "houlsby": ["attention.output.dense", r"re:.*layer\.\d+\.output\.dense"],
    "pfeiffer": [r"re:.*layer\.\d+\.output\.dense"],
}
ACTIVATIONS = {"relu": F.relu, "swish": F.silu, "silu": F.silu, "gelu": F.gelu}


def bottleneck_size(width: int, reduction_factor: float, bottleneck: int | None) -> int:
    """The library's down_sample: input_size // reduction_factor, at least 1."""
    size = bottleneck if bottleneck is not None else int(width // reduction_factor)
    return max(size, 1)


@torch.no_grad()
def init_projections(down: nn.Linear, up: nn.Linear, init: Init, gen: torch.Generator) -> None:
    """The library's init_weights: "bert" N(0, 0.02) weights and zero biases (default),
    "houlsby" truncated N(0, 1e-2) on [-2e-2, 2e-2], "mam_adapter" Kaiming-uniform down
    and a zero up-projection (so the adapter starts as the identity)."""
    for layer in (down, up):
        layer.bias.zero_()
    if init == "bert":
        for layer in (down, up):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.02)
    elif init == "houlsby":
        for layer in (down, up):
            w = torch.empty(layer.weight.shape)
            nn.init.trunc_normal_(w, mean=0.0, std=1e-2, a=-2e-2, b=2e-2, generator=gen)
            layer.weight.copy_(w)
    else:
        w = torch.empty(down.weight.shape)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
        down.weight.copy_(w)
        up.weight.zero_()


class BottleneckLinear(AdapterLinear):
    """A sublayer's output dense followed by a bottleneck adapter with its residual.

    Subclasses may change which weights the bottleneck uses (`projections`): MoSA's split
    modules in training, their merge at evaluation.
    """

    def __init__(self, base: nn.Linear, size: int, style: Style, act: str, scaling: float):
        super().__init__(base)
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown non-linearity {act!r}; choose from {sorted(ACTIVATIONS)}")
        d, dtype, device = base.out_features, base.weight.dtype, base.weight.device
        self.style, self.act, self.scaling = style, ACTIVATIONS[act], scaling
        self.adapter_down = nn.Linear(d, size, dtype=dtype, device=device)
        self.adapter_up = nn.Linear(size, d, dtype=dtype, device=device)
        self.norm: nn.Module | None = None  # the sublayer's LayerNorm (Pfeiffer)
        self.residual: torch.Tensor | None = None  # the sublayer's input_tensor (Pfeiffer)

    def projections(self) -> tuple[torch.Tensor, ...]:
        """(W_down, b_down, W_up, b_up) this forward uses."""
        d, u = self.adapter_down, self.adapter_up
        return d.weight, d.bias, u.weight, u.bias

    def bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        w_down, b_down, w_up, b_up = self.projections()
        return F.linear(self.act(F.linear(h, w_down, b_down)), w_up, b_up) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        h = out
        if self.style == "pfeiffer":
            if self.residual is None or self.norm is None:
                raise RuntimeError("the Pfeiffer adapter ran outside its sublayer's forward")
            h = self.norm(out + self.residual)
            self.residual = None
        h = self.adapter_input(h)
        return (self.adapter_input(out) + self.bottleneck(h)).to(out.dtype)


def attach_to_sublayer(model: nn.Module, name: str, adapter: BottleneckLinear) -> None:
    """Give a Pfeiffer adapter its sublayer's LayerNorm and input_tensor (the sublayer's
    second argument, as BertSelfOutput / BertOutput take it)."""
    parent_name = name.rpartition(".")[0]
    parent = model.backbone.get_submodule(parent_name)
    norm = getattr(parent, "LayerNorm", None)
    if not isinstance(norm, nn.LayerNorm):
        raise ValueError(
            f"style pfeiffer needs a post-LN output sublayer with a LayerNorm around "
            f"{name!r} (BERT-style); {parent_name!r} has none: use style houlsby"
        )

    def capture(module, args, kwargs):
        adapter.residual = args[1] if len(args) > 1 else kwargs.get("input_tensor")

    object.__setattr__(adapter, "norm", norm)  # the sublayer's own, not a new submodule
    parent.register_forward_pre_hook(capture, with_kwargs=True)
