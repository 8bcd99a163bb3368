"""S2FT: structured sparse fine-tuning of selected attention heads and FFN channels.

Follows Infini-AI-Lab/S2FT `experiments/train/finetune.py` (random selection of
`o_ratio` of all heads and `d_ratio` of all FFN channels across layers, seeded) and
`efficiency/s2ft.py` (`convert_mha_layer_to_s2` / `convert_ffn_layer_to_s2`: co-permute
the coupled weights so the selected heads / channels come first, then train only the
dense slice [0:n) of the output projections' input columns). Permuting heads in
query/key/value rows and output columns (and FFN channels in up rows and down columns)
leaves the function unchanged, so the model starts at W0; merging writes the slice back
into the weight in place, so there is no inference overhead. The selected heads come
first in the reference's own order (`head_order`); tests/test_golden_s2ft.py checks the
selection, the co-permutation, the forward and the gradients against the reference on a
tiny LLaMA.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, trainable_state
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.targets import replace_module


class S2FTParams(MethodParams):
    o_ratio: float = Field(default=0.052, ge=0.0, le=1.0)
    d_ratio: float = Field(default=0.02, ge=0.0, le=1.0)
    # Where the coupled weights live, relative to the backbone (BERT-family defaults).
    layers: str = "encoder.layer"
    attn_in: list[str] = ["attention.self.query", "attention.self.key", "attention.self.value"]
    attn_out: str = "attention.output.dense"
    ffn_in: list[str] = ["intermediate.dense"]
    ffn_out: str = "output.dense"


class S2SliceLinear(AdapterLinear):
    """A frozen linear whose first `n` input columns are a trainable dense slice."""

    def __init__(self, base: nn.Linear, n: int, order: torch.Tensor):
        super().__init__(base)
        self.n = n
        self.slice = nn.Parameter(base.weight[:, :n].detach().clone())
        self.register_buffer("order", order.clone())

    def merged_weight(self) -> torch.Tensor:
        rest = self.base.weight[:, self.n :]
        return torch.cat([self.slice.to(rest.dtype), rest], dim=1)

    def delta_weight(self) -> torch.Tensor:
        # In the slice's dtype (fp32 on a bf16 base): rounding it to bf16 would hide it.
        weight = self.base.weight.to(self.slice.dtype)
        return torch.cat([self.slice, weight[:, self.n :]], dim=1) - weight

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        rest = F.linear(x[..., self.n :], self.base.weight[:, self.n :], self.base.bias)
        return (F.linear(self.adapter_input(x[..., : self.n]), self.slice) + rest).to(x.dtype)


def pick(total_per_layer: int, n_layers: int, ratio: float, rng: random.Random) -> list[list]:
    """Global random sample of `ratio` of all units, split per layer (finetune.py)."""
    chosen = sorted(
        rng.sample(range(total_per_layer * n_layers), int(total_per_layer * n_layers * ratio))
    )
    per_layer: list[list[int]] = [[] for _ in range(n_layers)]
    for unit in chosen:
        per_layer[unit // total_per_layer].append(unit % total_per_layer)
    return per_layer


def unit_order(selected: list[int], total: int) -> torch.Tensor:
    return torch.tensor(selected + [j for j in range(total) if j not in selected])


def head_order(o_heads: list[int], total: int, v_heads: list[int] = ()) -> torch.Tensor:
    """convert_mha_layer_to_s2's head order: only_v + vo + only_o, then the rest. The
    reference builds the three groups as lists of Python sets, so they come in set
    iteration order, not sorted ({3, 9} iterates as 9, 3); this does the same, so the
    permuted weights are laid out as there. (FFN channels keep their selection order.)"""
    only_v = list(set(v_heads) - set(o_heads))
    vo = list(set(o_heads) & set(v_heads))
    only_o = list(set(o_heads) - set(v_heads))
    return unit_order(only_v + vo + only_o, total)


@torch.no_grad()
def permute(linear: nn.Linear, index: torch.Tensor, rows: bool) -> None:
    if rows:
        linear.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            linear.bias.copy_(linear.bias[index])
    else:
        linear.weight.copy_(linear.weight[:, index])


def convert(layer: nn.Module, ins: list[str], out: str, order: torch.Tensor, width: int, n: int):
    """Co-permute units (heads of `width` rows, or channels) and slice the output proj."""
    index = (order[:, None] * width + torch.arange(width)).reshape(-1)
    for name in ins:
        permute(layer.get_submodule(name), index, rows=True)
    out_linear = layer.get_submodule(out)
    permute(out_linear, index, rows=False)
    replace_module(layer, out, S2SliceLinear(out_linear, n * width, order))


class S2FT(Method):
    Params = S2FTParams

    def prepare(self, model, ctx) -> Prepared:
        p, config = self.params, model.backbone.config
        layers = model.backbone.get_submodule(p.layers)
        heads, hd = config.num_attention_heads, config.hidden_size // config.num_attention_heads
        rng = random.Random(ctx.seed)
        sel_heads = pick(heads, len(layers), p.o_ratio, rng)
        sel_channels = pick(config.intermediate_size, len(layers), p.d_ratio, rng)
        for layer, hs, chs in zip(layers, sel_heads, sel_channels, strict=True):
            if hs:
                convert(layer, p.attn_in, p.attn_out, head_order(hs, heads), hd, len(hs))
            if chs:
                order = unit_order(chs, config.intermediate_size)
                convert(layer, p.ffn_in, p.ffn_out, order, 1, len(chs))
        if not any(isinstance(m, S2SliceLinear) for m in model.modules()):
            raise ValueError("S2FT selected no head and no channel; raise o_ratio or d_ratio")
        prepared = adapter_prepared(model)
        prepared.adapter_state = lambda: s2ft_state(model)
        prepared.load_adapter_state = lambda state: load_s2ft_state(model, state)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError("S2FT's count depends on the model's heads and layers")


def s2ft_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = trainable_state(model)
    for name, m in model.named_modules():
        if isinstance(m, S2SliceLinear):
            state[f"{name}.order"] = m.order.clone()
    return state


@torch.no_grad()
def load_s2ft_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load slices; the unit order must match (it is a function of the seed)."""
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise KeyError(f"adapter tensors not in the model: {unknown[:5]}")
    for name, tensor in state.items():
        if name.endswith(".order"):
            if not torch.equal(own[name], tensor):
                raise ValueError(f"{name}: adapter was trained on another head/channel order")
        else:
            own[name].copy_(tensor)
