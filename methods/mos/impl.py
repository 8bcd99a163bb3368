"""MoS (Mixture of Shards), following the official code (Forence1999/MoS,
modules/Tied_LoRA.py, ft_mode "mos").

Targets of the same kind (same leaf name and shape, e.g. every layer's `query`) share one
global pool of shards for A and one for B. Each layer builds its r LoRA vectors by
concatenating l shards (vector sharding) picked by a fixed random index (subset
selection), drawn independently for A and B (pair dissociation); private_r of its
vectors come from a region of the pool only that layer uses (shard privatization). The
pools hold valid_r * L * (d_in + d_out) values per kind: the parameter count of a LoRA of
rank valid_r, while each layer uses rank r.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    AdapterLinear,
    TargetedParams,
    adapter_prepared,
    load_state_strict,
)
from suite.methods.api import Method, Prepared
from suite.methods.targets import find_targets, replace_module


class MoSParams(TargetedParams):
    rank_fields = ("r",)
    r: PositiveInt = 6  # rank each layer uses ("lora_r")
    valid_r: PositiveInt = 2  # parameter budget in equivalent LoRA ranks ("valid_param_lora_r")
    private_r: NonNegativeInt = 1  # equivalent ranks kept private per layer
    shards: PositiveInt = 2  # shards per vector ("num_chunk_per_vec")
    alpha: PositiveFloat = 16
    dropout: NonNegativeFloat = Field(default=0.0, lt=1.0)

    def shape_issues(self, shapes: list[tuple[int, int]]) -> dict[str, str]:
        issues = super().shape_issues(shapes)
        for d_out, d_in in shapes:  # the checks prepare runs, with the pool's layer count
            try:
                check_budget(self, len(shapes), d_in, d_out)
            except ValueError as exc:
                issues.setdefault("shards" if "shards" in str(exc) else "r", str(exc))
        return issues


class ShardPool(nn.Module):
    """The global pools of one target kind: A shards (n x d_in/l), B shards (n x d_out/l)."""

    def __init__(self, n: int, d_in: int, d_out: int, shards: int, like: torch.Tensor):
        super().__init__()
        kw = {"dtype": like.dtype, "device": like.device}
        self.a = nn.Parameter(torch.empty(n, d_in // shards, **kw))
        self.b = nn.Parameter(torch.zeros(n, d_out // shards, **kw))  # identity at init
        # Kaiming-uniform (a = sqrt 5) with the fan of a whole vector, d_in (official code).
        bound = (
            math.sqrt(3.0) * nn.init.calculate_gain("leaky_relu", math.sqrt(5)) / math.sqrt(d_in)
        )
        nn.init.uniform_(self.a, -bound, bound)


def assemble(pool: torch.Tensor, index: torch.Tensor, shards: int) -> torch.Tensor:
    """(r, d) vectors: vector j concatenates shards index[j l], ..., index[j l + l - 1]
    (official `transform_chunks`: row i of slice s is picked[i l + s])."""
    picked = pool[index]
    return torch.cat([picked[i::shards] for i in range(shards)], dim=1)


class MoSLinear(AdapterLinear):
    """y = W0 x + (alpha / r) B A dropout(x), with A, B assembled from shared shards."""

    def __init__(self, base: nn.Linear, pool: ShardPool, idx_a, idx_b, p: MoSParams):
        super().__init__(base)
        self.pool, self.shards, self.scaling = pool, p.shards, p.alpha / p.r
        self.register_buffer("shard_idx_a", idx_a.to(base.weight.device))
        self.register_buffer("shard_idx_b", idx_b.to(base.weight.device))
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        a = assemble(self.pool.a, self.shard_idx_a, self.shards)  # r x d_in
        b = assemble(self.pool.b, self.shard_idx_b, self.shards)  # r x d_out
        return a, b

    def update(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.factors()
        return (self.dropout(x) @ a.T) @ b * self.scaling

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return (b.T @ a) * self.scaling


def layer_indices(p: MoSParams, layer: int, layers: int, gen: torch.Generator) -> torch.Tensor:
    """r * l shard indices for one layer: random shared shards, then its private ones."""
    private_start = (p.valid_r - p.private_r) * layers * p.shards
    width = p.private_r * p.shards
    private = private_start + torch.arange(layer * width, (layer + 1) * width)
    shared_count = (p.r - p.private_r) * p.shards
    shared = (
        torch.randperm(private_start, generator=gen)[:shared_count]
        if private_start
        else private[:0]
    )
    return torch.cat([shared, private]).long()


def check_budget(p: MoSParams, layers: int, d_in: int, d_out: int) -> None:
    if d_in % p.shards or d_out % p.shards:
        raise ValueError(f"({d_out}, {d_in}) is not divisible into {p.shards} shards")
    if p.private_r > p.valid_r or p.private_r > p.r:
        raise ValueError("private_r must not exceed valid_r or r")
    if p.private_r == p.valid_r and p.r != p.valid_r:
        raise ValueError("with every shard private (private_r == valid_r), r must equal valid_r")
    if (p.r - p.private_r) > (p.valid_r - p.private_r) * layers:
        raise ValueError(f"r={p.r} needs more shared shards than the pool of {layers} layers holds")


class MoS(Method):
    Params = MoSParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        found = find_targets(model.backbone, ctx.preset.resolve_targets(p.targets))
        kinds: dict[tuple, list[tuple[str, nn.Linear]]] = defaultdict(list)
        for name, linear in found:
            kinds[(name.rpartition(".")[2], tuple(linear.weight.shape))].append((name, linear))
        gen = torch.Generator().manual_seed(ctx.seed)
        for (_, (d_out, d_in)), members in kinds.items():
            check_budget(p, len(members), d_in, d_out)
            n = p.valid_r * len(members) * p.shards
            pool = ShardPool(n, d_in, d_out, p.shards, members[0][1].weight)
            for layer, (name, linear) in enumerate(members):
                idx_a = layer_indices(p, layer, len(members), gen)
                idx_b = layer_indices(p, layer, len(members), gen)
                replace_module(model.backbone, name, MoSLinear(linear, pool, idx_a, idx_b, p))
        prepared = adapter_prepared(model)
        prepared.adapter_state = lambda: mos_state(model)
        prepared.load_adapter_state = lambda state: load_state_strict(model, state)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # Each target adds valid_r * (d_in + d_out) to its kind's pool: LoRA at rank valid_r.
        return sum(self.params.valid_r * (d_in + d_out) for d_out, d_in in shapes)


def mos_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable tensors (pools stored once) plus each layer's shard indices."""
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for n, b in model.named_buffers():
        if n.endswith(("shard_idx_a", "shard_idx_b")):
            state[n] = b.clone()
    return state
