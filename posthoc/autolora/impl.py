"""AutoLoRA: every source LoRA kept, fused per layer by a gate trained on the sources'
training splits (the fusion rule in fusion.py)."""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from pydantic import PositiveFloat

from suite.plugins import sibling_names
from suite.posthoc.api import Merged, MergeMethod, PosthocParams

# This method's own maths, in this folder (fusion.py).
GatedFusion, FusedLayer, FusedLinear = sibling_names(
    __file__, "fusion.py", "GatedFusion", "FusedLayer", "FusedLinear"
)


class AutoLoraParams(PosthocParams):
    # 'no_base': the gate reads the LoRA outputs and their product with the base output
    # (the authors' launch command); 'no_cross': the LoRA outputs alone.
    kind: Literal["no_base", "no_cross"] = "no_base"
    # w_out's initial value (train_merger.py's --wei in the authors' command).
    w: float = 0.512
    # AdamW's learning rate in train_merger.py (LightningModel(learning_rate=1e-4)).
    lr: PositiveFloat = 1e-4


class AutoLora(MergeMethod):
    Params = AutoLoraParams

    def merge(self, updates, ctx) -> Merged:
        p = self.params
        if ctx.data is None or ctx.data.train is None:
            raise ValueError("autolora trains its gates: its stage needs a budget")
        layers, stored = {}, {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            for name in sorted(updates[0].factors):
                factors = [u.factors[name] for u in updates]
                fusion = GatedFusion(factors[0][0].shape[0], p.kind, p.w)
                layers[name.removesuffix(".weight")] = FusedLayer(factors, fusion)
        # Gate parameters only: the LoRAs are buffers, the base linears frozen.
        wraps = {name: partial(FusedLinear, layer=layer) for name, layer in layers.items()}
        stats = ctx.data.train(wraps, p.lr, 0.0)
        for name, layer in layers.items():
            stored |= {f"{name}.{k}": v.detach().cpu() for k, v in layer.state_dict().items()}
        return Merged(
            stored=stored, shared={}, layers=wraps,
            train_steps=stats.steps, train_wall_s=stats.wall_s,
            notes=f"{len(layers)} fused layers, gates trained {stats.steps} steps "
            f"(final loss {stats.final_loss:.4f})",
        )  # fmt: skip
