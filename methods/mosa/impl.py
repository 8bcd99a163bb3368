"""MoSA (Mixture of Sparse Adapters, "Split & Merge"), following its authors' code
(Theia-4869/MoSA: src/models/vit_adapter/vit_mosa.py MoSABlock, src/utils/pruner.py,
train.py's --sparse-train masks, src/engine/trainer.py's gradient masking).

A bottleneck adapter (the `adapter` method's, suite/methods/bottleneck.py) whose split
projection holds N modules: a random score per weight entry is cut at its 1/N quantiles
into N disjoint masks that cover the matrix (Pruner.divide, mode "all"); module i is the
projection with only its own entries trained, E_i = where(mask_i, W, W0) from the common
initial weight W0 (the reference deep-copies one initialised expert N times), and it keeps
its own full bias (the reference's bias masks are all ones). Every training forward
draws one module per split projection at random (random.randint per block), and only the
drawn modules' entries step (a parameter without gradient skips AdamW's step: here
PerEntryAdamW's `active` masks). At evaluation the modules are merged into one adapter,
their mean (MoSABlock.merge, mode "add"): W = W0 + (W - W0) / N, b = mean_i b_i. With the
scripts' share: down the down-projection is one shared, fully trained layer and only the
up-projection is split; then the merged adapter's output is exactly the mean of the N
modules' outputs.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import load_state_strict, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared, StepHooks
from suite.methods.bottleneck import (
    DEFAULT_ACT,
    SUBLAYER_OUTPUTS,
    BottleneckLinear,
    attach_to_sublayer,
    bottleneck_size,
    init_projections,
)
from suite.methods.sparse import PerEntryAdamW


class MoSAParams(MethodParams):
    style: Literal["houlsby", "pfeiffer"] = "houlsby"
    reduction_factor: PositiveFloat = 16
    bottleneck: PositiveInt | None = None
    non_linearity: str | None = None
    experts: int = Field(default=4, ge=2)  # MODEL.ADAPTER.EXPERT_NUM
    share: Literal["down", "up", "none"] = "down"  # the scripts' MODEL.ADAPTER.SHARE
    scaling: PositiveFloat = 1.0
    targets: str | list[str] | None = None


def split_modules(score: torch.Tensor, n: int) -> torch.Tensor:
    """Module index per entry: Pruner.divide ("all") cuts the score at its 1/n quantiles;
    module i keeps kthvalue(int(i/n * N) + 1) <= score <= kthvalue(int((i+1)/n * N))."""
    flat, sparsity = score.reshape(-1), 1 / n
    module = torch.full_like(flat, -1, dtype=torch.long)
    for i in range(n):
        lower = torch.kthvalue(flat, int((sparsity * i) * flat.numel()) + 1).values
        upper = torch.kthvalue(flat, int((sparsity * (i + 1)) * flat.numel())).values
        inside = (flat >= lower) & (flat <= upper)
        if (module[inside] >= 0).any():
            raise ValueError("split modules overlap (tied scores)")
        module[inside] = i
    if (module < 0).any():
        raise ValueError("split modules do not cover the projection")
    return module.view_as(score)


class MoSALinear(BottleneckLinear):
    """A bottleneck adapter whose split projections hold `experts` disjoint modules."""

    def __init__(self, base, size, p: MoSAParams, act: str, gens: dict[str, torch.Generator]):
        super().__init__(base, size, p.style, act, p.scaling)
        init_projections(self.adapter_down, self.adapter_up, "mam_adapter", gens["init"])
        self.experts, self.draws = p.experts, gens["draws"]
        self.split = [k for k in ("down", "up") if p.share != k]
        for kind in self.split:
            layer = getattr(self, f"adapter_{kind}")
            score = torch.rand(layer.weight.shape, generator=gens["masks"])
            self.register_buffer(f"{kind}_module", split_modules(score, p.experts).to(torch.int8))
            self.register_buffer(f"{kind}_init", layer.weight.detach().clone())
            bias = layer.bias.detach().expand(p.experts, -1).clone()
            layer.register_parameter("bias", None)
            self.register_parameter(f"{kind}_bias", nn.Parameter(bias))
        self.active: dict[str, int] = {}

    def module_weight(self, kind: str, i: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Module i's (weight, bias) of a split projection; i None: their merge (the mean)."""
        w, w0 = getattr(self, f"adapter_{kind}").weight, getattr(self, f"{kind}_init")
        bias = getattr(self, f"{kind}_bias")
        if i is None:
            return w0 + (w - w0) / self.experts, bias.mean(0)
        return torch.where(getattr(self, f"{kind}_module") == i, w, w0), bias[i]

    def projections(self):
        if self.training:  # one module per split projection, drawn every forward
            draws = self.draw()
            self.active = {
                k: d for k, d in zip(("down", "up"), draws, strict=True) if k in self.split
            }
        out = []
        for kind in ("down", "up"):
            layer = getattr(self, f"adapter_{kind}")
            if kind in self.split:
                out.extend(
                    self.module_weight(kind, self.active.get(kind) if self.training else None)
                )
            else:
                out.extend((layer.weight, layer.bias))
        return tuple(out)

    def draw(self) -> list[int]:
        """(down module, up module) for one training forward (the reference's A, B)."""
        return torch.randint(0, self.experts, (2,), generator=self.draws).tolist()

    def active_mask(self, name: str) -> torch.Tensor | None:
        """The entries of tensor `name` that the last training forward used."""
        kind = name.split("_")[-2] if name.endswith("_bias") else name.split("_")[-1]
        if kind not in self.active:
            return None
        i = self.active[kind]
        if name.endswith("_bias"):
            mask = torch.zeros(self.experts, dtype=torch.bool, device=self.draws_device)
            mask[i] = True
            return mask[:, None].expand_as(getattr(self, name))
        return getattr(self, f"{kind}_module") == i

    @property
    def draws_device(self) -> torch.device:
        return self.adapter_up.weight.device

    def merged_adapter(self) -> dict[str, torch.Tensor]:
        """The one adapter MoSA leaves after tuning: (W_down, b_down, W_up, b_up)."""
        with torch.no_grad():
            was = self.training
            self.eval()
            w = self.projections()
            self.train(was)
        return dict(zip(("down.weight", "down.bias", "up.weight", "up.bias"), w, strict=True))


def mosa_optimizer(model: nn.Module):
    """PerEntryAdamW (Hugging Face's AdamW, as the reference's optimiser) where only the
    modules the last forward drew take the step; biases get no decay (the reference's
    no_decay names)."""
    owners = {}
    for module in model.modules():
        if isinstance(module, MoSALinear):
            for kind in module.split:
                owners[id(getattr(module, f"adapter_{kind}").weight)] = (module, f"adapter_{kind}")
                owners[id(getattr(module, f"{kind}_bias"))] = (module, f"{kind}_bias")

    def active(p):
        owner = owners.get(id(p))
        return None if owner is None else owner[0].active_mask(owner[1])

    def make(named, lr, weight_decay):
        decay = [p for n, p in named if p.ndim >= 2 and not n.endswith("bias")]
        rest = [p for n, p in named if not (p.ndim >= 2 and not n.endswith("bias"))]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]
        return PerEntryAdamW([g for g in groups if g["params"]], lr=lr, active=active)

    return make


def mosa_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable tensors plus each split projection's init and module ids (for reload)."""
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for name, buf in model.named_buffers():
        if name.endswith(("_module", "_init")):
            state[name] = buf.detach().clone()
    return state


class MoSA(Method):
    Params = MoSAParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        act = p.non_linearity or DEFAULT_ACT[p.style]
        gens = {"init": ctx.generator(0), "masks": ctx.generator(1), "draws": ctx.generator(2)}

        def build(name, lin):
            size = bottleneck_size(lin.out_features, p.reduction_factor, p.bottleneck)
            return MoSALinear(lin, size, p, act, gens)

        targets = (
            SUBLAYER_OUTPUTS[p.style]
            if p.targets is None
            else ctx.preset.resolve_targets(p.targets)
        )
        wrapped = wrap_targets(model, targets, build)
        if p.style == "pfeiffer":
            for name, layer in wrapped:
                attach_to_sublayer(model, name, layer)
        return Prepared(
            model=model,
            hooks=StepHooks(),
            adapter_state=lambda: mosa_state(model),
            load_adapter_state=lambda state: load_state_strict(model, state),
            make_optimizer=mosa_optimizer(model),
        )

    def expected_trainable_params(self, shapes) -> int:
        p = self.params
        total = 0
        for d_out, _ in shapes:
            m = bottleneck_size(d_out, p.reduction_factor, p.bottleneck)
            down_bias = m * (p.experts if p.share != "down" else 1)
            up_bias = d_out * (p.experts if p.share != "up" else 1)
            total += 2 * d_out * m + down_bias + up_bias
        return total
