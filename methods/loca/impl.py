"""LoCA, Location-Aware Cosine Adaptation (Du et al., ICLR 2025, arXiv 2502.06820).

dW = alpha C_m^T S C_n, with C_N the orthonormal DCT-II matrix (C[i, j] = sqrt(2/N)
cos((2j + 1) i pi / 2N), row 0 divided by sqrt 2) and S zero except k learnable
coefficients a (init 0) at learnable real locations L (2 x k, init U[0, 1]), mapped to
rows clamp(L0, 0, 0.999) (m - 1) and columns clamp(L1, 0, 0.999) (n - 1) and rounded in
the forward (duplicate locations sum). The backward (the official `IdctWithIndexGrad`):
with K = C_m G C_n^T, the 2-D DCT of the upstream gradient G of dW,

    dL/da_t = K[row_t, col_t]
    dL/drow_t = clamp(a_t (K[row_t + 1, col_t] - K[row_t - 1, col_t]) / 2, -1, 1)

(neighbours clamped at the borders; columns likewise), a central finite difference of
the loss for a one-step move on the frequency grid; autograd then multiplies by (m - 1)
through the clamp-and-scale mapping. The locations train in an alternating schedule,
driven here by step hooks (the reference toggles requires_grad in the layer's forward):
coefficients first, then cycles of `coef_steps` (10) coefficient steps and
`location_steps` (20) location steps until B_s (`location_fraction` of the run, ~10%),
after which the locations freeze and only the coefficients train. The locations have
their own learning rate (`location_lr`, 1e-4) through `Prepared.lr_scale`.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import AdapterLinear, adapter_prepared, trainable_state, wrap_targets
from suite.methods.api import Method, MethodParams, Prepared, StepHooks

COEFFICIENTS, LOCATIONS = "loca_coefficients", "loca_locations"


class LoCAParams(MethodParams):
    n_frequency: PositiveInt = 1000
    alpha: PositiveFloat = 1.0
    location_lr: PositiveFloat = 1e-4
    # B_s as a share of the run's steps (the paper: about 10%); `learn_location_iter`
    # fixes it in steps instead.
    location_fraction: float = Field(default=0.1, ge=0.0, le=1.0)
    learn_location_iter: int | None = Field(default=None, ge=0)
    coef_steps: PositiveInt = 10
    location_steps: PositiveInt = 20
    targets: str | list[str] = "qv"

    spectrum_fields = ("n_frequency",)


@lru_cache(maxsize=32)
def dct_matrix(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The orthonormal DCT-II matrix C_N (N x N), built in float32 as the reference does
    (a plain tensor even when first asked for under inference mode: it is cached)."""
    with torch.inference_mode(False):
        return _dct(n).to(device=device, dtype=dtype)


def _dct(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float32)[:, None]
    j = torch.arange(n, dtype=torch.float32)[None, :]
    c = torch.cos((2 * j + 1) * i * torch.pi / (2 * n)) * (2.0 / n) ** 0.5
    c[0] /= 2.0**0.5
    return c


def neighbours(index: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(index - 1, index + 1), clamped to [0, size - 1]."""
    return (index - 1).clamp(min=0), (index + 1).clamp(max=size - 1)


class LoCAFunction(torch.autograd.Function):
    """S(a, L) -> C_m^T S C_n, with LoCA's finite-difference gradient for L."""

    @staticmethod
    def forward(ctx, coefficients, locations, m, n):
        rows, cols = locations.round().long()
        spectrum = coefficients.new_zeros(m, n).index_put_((rows, cols), coefficients, True)
        c_m = dct_matrix(m, coefficients.device, coefficients.dtype)
        c_n = dct_matrix(n, coefficients.device, coefficients.dtype)
        ctx.save_for_backward(coefficients, rows, cols)
        ctx.shape = (m, n)
        return c_m.T @ spectrum @ c_n

    @staticmethod
    def backward(ctx, grad_out):
        coefficients, rows, cols = ctx.saved_tensors
        m, n = ctx.shape
        c_m = dct_matrix(m, grad_out.device, grad_out.dtype)
        c_n = dct_matrix(n, grad_out.device, grad_out.dtype)
        k = c_m @ grad_out @ c_n.T
        grad_a = k[rows, cols] if ctx.needs_input_grad[0] else None
        grad_loc = None
        if ctx.needs_input_grad[1]:
            (up, down), (left, right) = neighbours(rows, m), neighbours(cols, n)
            d_row = 0.5 * coefficients * (k[down, cols] - k[up, cols])
            d_col = 0.5 * coefficients * (k[rows, right] - k[rows, left])
            grad_loc = torch.stack([d_row, d_col]).clamp(-1, 1)
        return grad_a, grad_loc, None, None


class LoCALinear(AdapterLinear):
    """y = W0 x + alpha (C_m^T S(a, L) C_n) x."""

    def __init__(self, base: nn.Linear, p: LoCAParams, generator: torch.Generator):
        super().__init__(base)
        self.alpha = p.alpha
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.loca_coefficients = nn.Parameter(torch.zeros(p.n_frequency, **like))
        locations = torch.rand(2, p.n_frequency, generator=generator)  # U[0, 1]
        self.loca_locations = nn.Parameter(locations.to(**like))

    def delta_weight(self) -> torch.Tensor:
        m, n = self.out_features, self.in_features
        loc = self.loca_locations.clamp(0, 0.999)
        loc = torch.stack([loc[0] * (m - 1), loc[1] * (n - 1)])
        return self.alpha * LoCAFunction.apply(self.loca_coefficients, loc, m, n)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight())

    def set_phase(self, locations: bool) -> None:
        """Train the locations (and not the coefficients), or the reverse."""
        self.loca_locations.requires_grad_(locations)
        self.loca_coefficients.requires_grad_(not locations)


def location_phase(step: int, learn_until: int, coef_steps: int, location_steps: int) -> bool:
    """Whether step `step` (0-based) trains the locations: the reference's schedule
    (step 0 and each cycle's first `coef_steps` train the coefficients; none from B_s)."""
    return step < learn_until and step % (coef_steps + location_steps) >= coef_steps


class LoCASchedule(StepHooks):
    """Toggles the layers between coefficient and location steps; locations frozen from B_s."""

    def __init__(self, layers: list[LoCALinear], p: LoCAParams):
        self.layers, self.p = layers, p
        self.learn_until = 0

    def bind_trainer(self, trainer) -> None:
        p = self.p
        fixed = p.learn_location_iter
        self.learn_until = (
            fixed if fixed is not None else round(p.location_fraction * trainer.total_steps)
        )
        super().bind_trainer(trainer)

    def _set(self, step: int) -> None:
        p = self.p
        phase = location_phase(step, self.learn_until, p.coef_steps, p.location_steps)
        for layer in self.layers:
            layer.set_phase(phase)

    def on_train_start(self, total_steps: int) -> None:
        self._set(0)

    def after_optimizer_step(self, step: int) -> None:
        self._set(step + 1)

    def on_train_end(self) -> None:
        self._set(self.learn_until)  # coefficients only, as after B_s


class LoCA(Method):
    Params = LoCAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        layers: list[LoCALinear] = []

        def factory(_, linear):
            # Each layer its own locations, drawn from the cell's seed (+ its index).
            layers.append(LoCALinear(linear, self.params, ctx.generator(len(layers))))
            return layers[-1]

        wrap_targets(model, patterns, factory)
        return self._prepared(model, layers, ctx)

    def _prepared(self, model, layers: list[LoCALinear], ctx) -> Prepared:
        p = self.params
        prepared = adapter_prepared(model, LoCASchedule(layers, p))
        # Both trainable from the start, so the optimiser holds both; the schedule then
        # toggles requires_grad, as the reference does.
        scale = p.location_lr / ctx.training.lr if ctx.training is not None else 1.0
        prepared.lr_scale = lambda name: scale if name.endswith(LOCATIONS) else 1.0
        # The reported count: the k coefficients per layer (the 2k locations train only
        # before B_s); the saved adapter holds the locations too (frozen after B_s).
        prepared.trainable_count = lambda: sum(m.loca_coefficients.numel() for m in layers)
        prepared.adapter_state = lambda: (
            trainable_state(model)
            | {
                n: t.detach().clone()
                for n, t in model.named_parameters()
                if n.endswith((COEFFICIENTS, LOCATIONS))
            }
        )
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # What requires_grad shows after prepare: coefficients and locations (3k per layer).
        return 3 * self.params.n_frequency * len(shapes)
