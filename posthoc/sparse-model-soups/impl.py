"""Sparse Model Soups: prune, retrain copies under the shared mask, average, repeat."""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from suite.plugins import sibling_names
from suite.posthoc.api import Compressed, CompressMethod, PosthocParams

# This method's own maths, in this folder (soups.py).
magnitude_masks, phase_share, uniform_soup = sibling_names(
    __file__, "soups.py", "magnitude_masks", "phase_share", "uniform_soup"
)


class SMSParams(PosthocParams):
    sparsity: float = Field(default=0.5, gt=0.0, lt=1.0)
    phases: PositiveInt = 1
    copies: PositiveInt = 3
    vary: Literal["seed", "weight_decay"] = "seed"
    weight_decays: list[NonNegativeFloat] = Field(default_factory=lambda: [0.0, 0.01, 0.1])
    selector: Literal["global", "uniform"] = "global"
    lr: PositiveFloat = 5e-5
    weight_decay: NonNegativeFloat = 0.0
    targets: str | list[str] = "all-linear"


class SparseModelSoups(CompressMethod):
    Params = SMSParams

    def compress(self, model, ctx) -> Compressed:
        p = self.params
        if ctx.retrain is None:
            raise ValueError("sparse-model-soups trains: its stage needs a budget")
        if p.vary == "weight_decay" and len(p.weight_decays) < p.copies:
            raise ValueError(f"{p.copies} copies need {p.copies} weight_decays")
        names = [name for name, _ in ctx.resolve(p.targets)]
        steps = wall = 0.0
        masks: dict[str, torch.Tensor] = {}
        for phase in range(p.phases):
            weights = {n: model.backbone.get_submodule(n).weight for n in names}
            masks = magnitude_masks(weights, phase_share(p.sparsity, p.phases), masks, p.selector)
            soup = []
            for i in range(p.copies):
                member = copy.deepcopy(model)
                held = {member.backbone.get_submodule(n).weight: m for n, m in masks.items()}
                with torch.no_grad():
                    for param, m in held.items():
                        param[m] = 0
                decay = p.weight_decays[i] if p.vary == "weight_decay" else p.weight_decay
                seed = ctx.seed + 1000 * phase + i if p.vary == "seed" else ctx.seed + 1000 * phase
                stats = ctx.retrain(member, seed, p.lr, decay, held)
                steps, wall = steps + stats.steps, wall + stats.wall_s
                soup.append(member.state_dict())
            model.load_state_dict(uniform_soup(soup))
        pruned = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        return Compressed(
            pruned=pruned, total=total, level=p.sparsity, level_label=f"{p.sparsity:.0%}",
            sparse={f"backbone.{n}.weight": None for n in names},
            train_steps=int(steps), train_wall_s=wall,
            notes=f"{p.phases} phase(s) x {p.copies} copies, varied {p.vary}",
        )  # fmt: skip
