"""Slice targets: adapting named output rows of a fused projection.

GPT-2's `attn.c_attn` computes q, k and v in one linear (rows [0, d), [d, 2d), [2d, 3d));
LoRA's GPT-2 experiments adapt q and v only. A model preset declares its fused modules
and their parts (`fused_modules`); before a method prepares a model, every fused linear
one of its targets names a part of (`attn.c_attn.q`) is split into a `FusedLinear` that
holds one plain `nn.Linear` per part and concatenates their outputs. A method then finds
`attn.c_attn.q` as it finds any linear, so every method that adapts linears by name
supports slices without knowing about them; the parts it does not target (k) stay frozen
and compute exactly what the fused rows did. A fused module no target names a part of
stays whole (`attn.c_attn` still adapts q, k and v as one matrix).

A method whose code cannot adapt a part (it reaches past the linear it wraps) sets
`adapts_slices = False` on its class; the plan refuses slice targets for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from suite.methods.targets import matches, replace_module
from suite.specs.model import ModelPreset


class FusedLinear(nn.Module):
    """A fused linear held as one `nn.Linear` per named part (children named by part);
    the output is the parts' outputs concatenated in order, as the fused layer's."""

    def __init__(self, linear: nn.Linear, rows: Mapping[str, int]):
        super().__init__()
        self.part_names = tuple(rows)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        start = 0
        for name, n in rows.items():
            part = nn.Linear(
                linear.in_features,
                n,
                bias=linear.bias is not None,
                dtype=linear.weight.dtype,
                device=linear.weight.device,
            )
            with torch.no_grad():
                part.weight.copy_(linear.weight[start : start + n])
                if linear.bias is not None:
                    part.bias.copy_(linear.bias[start : start + n])
            part.requires_grad_(linear.weight.requires_grad)
            self.add_module(name, part)
            start += n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.part_names], dim=-1)


def target_keys(params: Any) -> list[str]:
    """The target settings among a method's hyperparameters (a `MethodParams` or its
    dict): `targets` and any `<something>_targets` (MoLE's `lora_targets`) set to names."""
    items = params.items() if isinstance(params, Mapping) else dict(params).items()
    return [
        key
        for key, value in items
        if (key == "targets" or key.endswith("_targets")) and isinstance(value, str | list)
    ]


def target_patterns(params: Any, preset: ModelPreset) -> list[str]:
    """The module-name patterns every target setting of `params` resolves to."""
    values = params if isinstance(params, Mapping) else dict(params)
    return [p for key in target_keys(values) for p in preset.resolve_targets(values[key])]


def fused_rows(preset: ModelPreset, name: str, out_features: int) -> dict[str, int] | None:
    """Rows of each part of the fused module `name` (None: the preset does not declare
    `name` fused)."""
    for key, parts in (preset.fused_modules or {}).items():
        if not matches(name, key):
            continue
        if isinstance(parts, dict):
            if sum(parts.values()) != out_features:
                raise ValueError(
                    f"model '{preset.name}': parts of {name} sum to {sum(parts.values())} "
                    f"rows, the module has {out_features}"
                )
            return dict(parts)
        if out_features % len(parts):
            raise ValueError(
                f"model '{preset.name}': {name} has {out_features} rows, not divisible "
                f"into {len(parts)} equal parts"
            )
        return dict.fromkeys(parts, out_features // len(parts))
    return None


def split_plan(
    linears: Mapping[str, tuple[int, int]], preset: ModelPreset, patterns: Iterable[str]
) -> dict[str, dict[str, int]]:
    """{fused module name: rows per part} for every fused linear (by name, with its
    (d_out, d_in)) one of `patterns` names a part of. Pure, so the plan predicts exactly
    what `split_fused` will do to the model."""
    patterns = list(patterns)
    plan = {}
    for name, (d_out, _) in linears.items():
        rows = fused_rows(preset, name, d_out)
        if rows and any(matches(f"{name}.{part}", p) for part in rows for p in patterns):
            plan[name] = rows
    return plan


def linears_after_split(
    linears: Mapping[str, tuple[int, int]], plan: Mapping[str, Mapping[str, int]]
) -> dict[str, tuple[int, int]]:
    """The linear modules (name -> (d_out, d_in)) once the fused ones in `plan` are split."""
    out = {}
    for name, shape in linears.items():
        if name not in plan:
            out[name] = shape
            continue
        for part, rows in plan[name].items():
            out[f"{name}.{part}"] = (rows, shape[1])
    return out


def split_fused(root: nn.Module, preset: ModelPreset, patterns: Iterable[str]) -> list[str]:
    """Split, under `root`, every fused linear a pattern names a part of; returns their
    names. A base stored compressed (nf4, int8, fp8) is refused: its rows are not plain
    tensors to slice."""
    linears = {
        name: (m.out_features, m.in_features)
        for name, m in root.named_modules()
        if isinstance(m, nn.Linear)
    }
    plan = split_plan(linears, preset, patterns)
    for name, rows in plan.items():
        linear = root.get_submodule(name)
        if type(linear) is not nn.Linear:
            raise ValueError(
                f"cannot adapt a slice of {name}: its base is stored as "
                f"{type(linear).__name__}; target the whole module or use a bf16 base"
            )
        replace_module(root, name, FusedLinear(linear, rows))
    return list(plan)
