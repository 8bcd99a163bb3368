"""DCT-AdamW: AdamW on the gradient's projection onto r columns of a fixed DCT basis,
chosen dynamically by their alignment with the gradient (no SVD, indices only).

Follows ista-daslab-optimizers 1.1.15 (PyPI; IST-DASLab/ISTA-DASLab-Optimizers@4c98e6e)
`fft_low_rank/dct_adamw.py`, `fft_low_rank/fft_projector.py` and `utils/dct.py`
(proj 'dct', sim_type 'matmul'):

- Q = dct3_matrix(n): Q[a, b] = sqrt(2/n) cos(pi a (2b + 1) / 2n), row 0 times sqrt(1/2);
- per target weight W (rows x cols) with gradient G: if rows >= cols, S = G Q and the r
  columns of S with the largest l1 norm are kept (a = S[:, i], back-projection u Q[:, i]^T);
  else S = Q^T G, rows ranked (a = S[i, :], back-projection Q[:, i] u). Only the indices are
  stored. The selection refreshes when the optimiser's global step is 1 or a multiple of
  `update_proj_gap` (1 by default: every step);
- optional error feedback (A = G + E, E = A - back(a)), unquantised;
- W *= 1 - lr wd first; m, v as usual; u = m / (eps sqrt(bc2) + sqrt v);
  W -= lr sqrt(bc2) / bc1 * back(u), bias corrections from the global step count;
- every other tensor gets the same AdamW step unprojected.

Differences kept: the official optimiser projects every 2-D tensor below 32,000 in both
dimensions and shares one Q sized by the first such tensor's smaller side; here the
projected set is the preset's target weights (as for GaLore and FRUGAL) and there is one
Q per size (identical wherever all targets share their smaller side, as in BERT models).
The basis is counted in the optimiser state (`extra_state_tensors`). `rotate_subspace` is
not offered: the official rotation `torch.matmul(w, R, out=w)` writes into its own input,
which gives wrong moments (on CPU torch 2.13, a max error of about 3 on a 6 x 3 example).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from suite.methods.api import MethodParams
from suite.methods.optimizers import OptimizerMethod, update_moments, with_grads


class DCTAdamWParams(MethodParams):
    rank_fields = ("rank",)
    rank: PositiveInt = 4
    update_proj_gap: PositiveInt = 1
    targets: str | list[str] = Field(default_factory=lambda: ["attention", "mlp"])
    ell_norm: PositiveFloat = 1.0
    error_feedback: bool = False
    eps: PositiveFloat = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)


def dct3_matrix(n: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The orthonormal DCT matrix, computed as utils/dct.py does (float32, then cast)."""
    lin = torch.arange(n)
    grid = lin.repeat(n, 1).to(torch.float)
    q = math.sqrt(2 / n) * torch.cos(torch.pi * (grid.t() * (2.0 * grid + 1.0)) / (2.0 * n))
    q[0, :] *= math.sqrt(0.5)
    return q.to(device=device, dtype=dtype)


class DCTAdamW(torch.optim.Optimizer):
    """A group with a `rank` key is projected onto DCT columns; the rest is AdamW."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999),
                 eps: float = 1e-8, ell_norm: float = 1.0,
                 error_feedback: bool = False):  # fmt: skip
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})
        self.betas, self.eps, self.ell_norm = betas, eps, ell_norm
        self.error_feedback = error_feedback
        self.steps = 0
        self.bases: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def extra_state_tensors(self) -> list[torch.Tensor]:
        """State kept outside `self.state`: the shared DCT bases."""
        return list(self.bases.values())

    def _basis(self, p: torch.Tensor) -> torch.Tensor:
        key = (min(p.shape), p.dtype, p.device)
        if key not in self.bases:
            self.bases[key] = dct3_matrix(key[0], p.dtype, p.device)
        return self.bases[key]

    def _refreshes(self, gap: int) -> bool:
        return self.steps == 1 or self.steps % gap == 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        self.steps += 1
        b1, b2 = self.betas
        bc1, sqrt_bc2 = 1 - b1**self.steps, math.sqrt(1 - b2**self.steps)
        for group, p in with_grads(self):
            lr, wd = group["lr"], group["weight_decay"]
            if wd > 0:
                p.mul_(1 - lr * wd)
            if "rank" in group:
                direction = self._low_rank_direction(p, group, sqrt_bc2)
            else:
                direction = self._adam_direction(p, p.grad, sqrt_bc2)
            p.add_(direction, alpha=-lr * sqrt_bc2 / bc1)
        return loss

    def _adam_direction(self, p, g, sqrt_bc2) -> torch.Tensor:
        state = self.state[p]
        if "m" not in state:
            state["m"], state["v"] = torch.zeros_like(g), torch.zeros_like(g)
        m, v = state["m"], state["v"]
        update_moments(m, v, g, self.betas)
        return m / (self.eps * sqrt_bc2 + v.sqrt())

    def _low_rank_direction(self, p, group, sqrt_bc2) -> torch.Tensor:
        state, q = self.state[p], self._basis(p)
        right = p.shape[0] >= p.shape[1]
        rank = group["rank"]
        if "indices" not in state:
            low = (p.shape[0], rank) if right else (rank, p.shape[1])
            state["m"] = torch.zeros(low, dtype=p.dtype, device=p.device)
            state["v"] = torch.zeros(low, dtype=p.dtype, device=p.device)
            state["indices"] = torch.zeros(rank, dtype=torch.int32, device=p.device)
            if self.error_feedback:
                state["error"] = torch.zeros_like(p)
        acc = p.grad + state["error"] if self.error_feedback else p.grad
        if self._refreshes(group["update_proj_gap"]):
            a = self._select(acc, q, state["indices"], right)
        else:
            cols = q[:, state["indices"]]
            a = acc @ cols if right else cols.T @ acc
        if self.error_feedback:
            state["error"].copy_(acc - _back(q, state["indices"], a, right))
        m, v = state["m"], state["v"]
        update_moments(m, v, a, self.betas)
        return _back(q, state["indices"], m / (self.eps * sqrt_bc2 + v.sqrt()), right)

    def _select(self, acc, q, indices, right) -> torch.Tensor:
        """Rank the basis columns by the l-norm of S = A Q (or rows of Q^T A); keep r."""
        s = acc @ q if right else q.T @ acc
        norms = s.norm(p=self.ell_norm, dim=0 if right else 1)
        indices.copy_(torch.topk(norms, k=indices.numel(), sorted=False).indices)
        return s[:, indices] if right else s[indices, :]


def _back(q, indices, low, right) -> torch.Tensor:
    cols = q[:, indices]
    return low @ cols.T if right else cols @ low


class DCTAdamWMethod(OptimizerMethod):
    Params = DCTAdamWParams
    group_fields = ("rank", "update_proj_gap")
    checks_rank = True

    def optimizer(self, ctx):
        p = self.params
        return lambda groups, lr: DCTAdamW(groups, lr=lr, betas=p.betas, eps=p.eps,
                                           ell_norm=p.ell_norm,
                                           error_feedback=p.error_feedback)  # fmt: skip
