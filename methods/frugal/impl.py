"""FRUGAL: a state-full AdamW on part of each projectable gradient, signSGD on the rest.

Follows the official code (philipzmr/FRUGAL, init commit c7ebe4c by its author, read in
the copy hungquangbui02022003/FRUGAL): `frugal/proj_optimizer_templates.py`
(ProjOptimizer.step, GaloreOptimizer, CoordOptimizer, BlockOptimizer), `frugal/adamw.py`
(AdamW._init_state / _compute_update), `frugal/galore_projector.py` and
`frugal/coordinate_projector.py`:

- every step, each tensor: W *= 1 - lr wd, step += 1, W += update;
- projectable tensors (the target weights): every `update_gap` steps (when the first
  tensor's step count is a multiple of it, counting from 0) the state-full part is chosen
  again and, with `reset_statistics`, the moments and step count restart from zero;
  * `columns` / `rows` / `randk` (CoordOptimizer): int(total x density) random columns,
    rows or entries (torch.randperm), Adam on them; `svd` (GaloreOptimizer, std side):
    P from the SVD of the current gradient with rank round(side x density);
  * the state-free residual g - up(down(g)) gets -lr x proj_lr_scale x inactive_lr_scale
    x sign(residual) (`sign_sgd`), or the plain residual (`sgd`), or nothing (`no`);
  * `block` (BlockOptimizer, what the pre-training command line calls `frugal`): whole
    tensors are blocks; round(N x density) of them are active with fresh AdamW state,
    the others take the state-free rule; order `random` (torch.randperm), `ascending` or
    `descending`;
- Adam: denom = sqrt(v) / sqrt(bc2) + eps, update = -(lr / bc1) m / denom, the active
  lr being lr x proj_lr_scale; other tensors get the same AdamW unprojected.

The random draws come from a generator seeded from the cell's seed (the official code
draws from torch's global generator), kept across optimiser restarts.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveInt

from suite.methods.api import MethodParams
from suite.methods.optimizers import OptimizerMethod, update_moments, with_grads

Projection = Literal["columns", "rows", "randk", "svd", "block"]


class FrugalParams(MethodParams):
    projection: Projection = "columns"
    density: float = Field(default=0.25, ge=0.0, le=1.0)
    update_gap: PositiveInt = 200
    inactive_lr_scale: NonNegativeFloat = 0.1
    proj_lr_scale: NonNegativeFloat = 1.0
    inactive_update_rule: Literal["sign_sgd", "sgd", "no"] = "sign_sgd"
    reset_statistics: bool = True
    block_order: Literal["random", "ascending", "descending"] = "random"
    targets: str | list[str] = Field(default_factory=lambda: ["attention", "mlp"])
    eps: float = Field(default=1e-8, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)


class Subspace:
    """The state-full part of one gradient: coordinates (columns, rows, entries) or an
    SVD projection, as coordinate_projector.py / galore_projector.py compute it."""

    def __init__(self, kind: str, density: float, shape: torch.Size):
        self.kind, self.density, self.shape = kind, density, shape
        self.index = None  # coordinates, or the projection matrix for svd
        self.right = shape[0] >= shape[1]

    def refresh(self, grad: torch.Tensor, gen: torch.Generator) -> None:
        m, n = self.shape
        if self.kind == "svd":
            side = n if self.right else m
            rank = round(side * self.density)
            u, _, vh = torch.linalg.svd(grad.float(), full_matrices=False)
            self.index = (vh[:rank, :] if self.right else u[:, :rank]).to(grad.dtype)
            return
        total = {"columns": n, "rows": m, "randk": m * n}[self.kind]
        keep = torch.randperm(total, generator=gen)[: int(total * self.density)]
        self.index = keep.to(grad.device)

    def down(self, full: torch.Tensor) -> torch.Tensor:
        if self.kind == "svd":
            return full @ self.index.T if self.right else self.index.T @ full
        if self.kind == "columns":
            return full[:, self.index]
        if self.kind == "rows":
            return full[self.index]
        return full.reshape(-1)[self.index]

    def up(self, low: torch.Tensor) -> torch.Tensor:
        if self.kind == "svd":
            return low @ self.index if self.right else self.index @ low
        full = torch.zeros(self.shape, dtype=low.dtype, device=low.device)
        if self.kind == "columns":
            full[:, self.index] = low
        elif self.kind == "rows":
            full[self.index] = low
        else:
            full.view(-1)[self.index] = low
        return full

    def tensors(self) -> list[torch.Tensor]:
        return [self.index] if self.index is not None else []


class FrugalAdamW(torch.optim.Optimizer):
    """FRUGAL's AdamW; the group with `frugal` set holds the projectable tensors."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 generator: torch.Generator | None = None):  # fmt: skip
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )
        self.generator = generator if generator is not None else torch.Generator()
        self.subspaces: dict[int, Subspace] = {}

    def extra_state_tensors(self) -> list[torch.Tensor]:
        """State kept outside `self.state`: the chosen coordinates or projections."""
        return [t for s in self.subspaces.values() for t in s.tensors()]

    @staticmethod
    def _fresh(state: dict, like: torch.Tensor) -> None:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(like)
        state["exp_avg_sq"] = torch.zeros_like(like)

    def _adam(self, grad, state, lr, group) -> torch.Tensor:
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        update_moments(m, v, grad, (beta1, beta2))
        t = state["step"]
        denom = v.sqrt().div_(math.sqrt(1.0 - beta2**t)).add_(group["eps"])
        return m / denom * (-lr / (1.0 - beta1**t))

    def _state_free(self, residual, group) -> torch.Tensor:
        lr = group["lr"] * group["proj_lr_scale"] * group["inactive_lr_scale"]
        rule = group["inactive_update_rule"]
        if rule == "no":
            return torch.zeros_like(residual)
        return -lr * (residual.sign() if rule == "sign_sgd" else residual)

    def _due(self, group) -> bool:
        state = self.state[group["params"][0]]
        return "step" not in state or state["step"] % group["update_gap"] == 0

    def _refresh(self, group) -> None:
        if group["projection"] == "block":
            return self._refresh_blocks(group)
        for p in group["params"]:
            state = self.state[p]
            sub = self.subspaces.setdefault(
                id(p), Subspace(group["projection"], group["density"], p.shape)
            )
            sub.refresh(p.grad, self.generator)
            if "step" not in state:
                self._fresh(state, sub.down(p.grad))
            elif group["reset_statistics"]:
                state["step"] = 0
                state["exp_avg"].zero_()
                state["exp_avg_sq"].zero_()

    def _refresh_blocks(self, group) -> None:
        params = group["params"]
        for p in params:
            self.state[p].clear()
            self.state[p].update(step=0, active=False)
        n_active = round(len(params) * group["density"])
        order = group["block_order"]
        if order == "random":
            chosen = torch.randperm(len(params), generator=self.generator)[:n_active].tolist()
        else:
            start = group.setdefault("next_block", 0 if order == "ascending" else len(params) - 1)
            sign = 1 if order == "ascending" else -1
            chosen = [(start + sign * k) % len(params) for k in range(n_active)]
            group["next_block"] = (start + sign * n_active) % len(params)
        for idx in chosen:
            self._fresh(self.state[params[idx]], params[idx])
            self.state[params[idx]]["active"] = True

    def _projected_update(self, p, grad, state, group) -> torch.Tensor:
        lr = group["lr"] * group["proj_lr_scale"]
        if group["projection"] == "block":
            if state["active"]:
                return self._adam(grad, state, lr, group)
            return self._state_free(grad, group)
        sub = self.subspaces[id(p)]
        low = sub.down(grad)
        update = sub.up(self._adam(low, state, lr, group))
        if group["inactive_update_rule"] == "no":
            return update
        return update + self._state_free(grad - sub.up(low), group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:  # a refresh reads only its own group's tensors
            if group.get("frugal", False) and self._due(group):
                self._refresh(group)
        for group, p in with_grads(self):
            state = self.state[p]
            if not state:
                self._fresh(state, p)
            p.mul_(1 - group["lr"] * group["weight_decay"])
            state["step"] += 1
            if group.get("frugal", False):
                update = self._projected_update(p, p.grad, state, group)
            else:
                update = self._adam(p.grad, state, group["lr"], group)
            p.add_(update)
        return loss


class Frugal(OptimizerMethod):
    Params = FrugalParams
    group_fields = ("projection", "density", "update_gap", "proj_lr_scale",
                    "inactive_lr_scale", "inactive_update_rule", "reset_statistics",
                    "block_order")  # fmt: skip
    group_flags = {"frugal": True}

    def optimizer(self, ctx):
        p = self.params
        gen = ctx.generator(offset=7919)  # one stream across optimiser restarts
        return lambda groups, lr: FrugalAdamW(groups, lr=lr, betas=p.betas, eps=p.eps,
                                              generator=gen)  # fmt: skip
