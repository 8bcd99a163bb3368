"""Sketch to Adapt (SketchTune): every target weight row is sketched into a small lookup
table, W[i, j] = grid[i, group(j), code[i, j]], the 4-bit codes are frozen and the
tables train (one tower: no adapter beside the compressed base).

- Sketching (the paper, arXiv 2410.06364 section 3, as summarised; the compression code
  is not in the repository): each row is split into `gpr` contiguous groups; each group
  gets 2^bits centroids by weighted Lloyd (k-means) over its values, the weight of
  column j being 1 / [H^-1]_jj with H = X^T X + damping over calibration inputs X of the
  layer (GPTQ's Hessian); each weight maps to its nearest centroid. The paper then
  refines the mapping with GPTQ-style error compensation: not done here.
- Fine-tuning (LeanModels/SketchTune tailor_utils.py Sub4BitMatMul / Sub4BitLinear):
  the forward gathers W from the tables and codes; the backward recomputes W for the
  input gradient and scatter-adds grad_W = g^T x into the tables by code.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from suite.methods.adapters import TargetedParams, load_state_strict, trainable_state
from suite.methods.api import Method, PrepareContext, Prepared
from suite.methods.targets import find_targets, replace_module
from suite.models.storage import module_bytes


class SketchParams(TargetedParams):
    targets: str | list[str] = "all-linear"
    bits: int = Field(default=4, ge=1, le=4)
    gpr: PositiveInt = 4
    lloyd_iterations: PositiveInt = 25
    calibration_batches: PositiveInt = 4
    damping: float = Field(default=0.01, gt=0.0)

    def shape_issues(self, shapes: list[tuple[int, int]]) -> dict[str, str]:
        issues = super().shape_issues(shapes)
        widths = sorted({d_in for _, d_in in shapes if d_in % (2 * self.gpr)})
        if widths:
            issues["gpr"] = (
                f"d_in = {widths[0]} of a target is not divisible by 2 x gpr ({self.gpr})"
            )
        return issues


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte, the first in the high nibble (the reference's layout)."""
    return (codes[..., 0::2] << 4 | codes[..., 1::2]).to(torch.uint8)


def unpack_codes(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack([packed >> 4, packed & 0b1111], dim=-1).flatten(-2).long()


def gather_weight(grid: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """W (rows x cols) from tables (rows x groups x 2^bits) and packed codes."""
    codes = unpack_codes(packed)  # rows x groups x cols_per_group
    return torch.gather(grid, 2, codes).flatten(1)


class _SketchMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, grid, packed)
        return x @ gather_weight(grid, packed).to(x.dtype).T

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, grid, packed = ctx.saved_tensors
        w = gather_weight(grid, packed)
        grad_x = grad @ w.to(grad.dtype)
        grad_w = grad.reshape(-1, grad.shape[-1]).T @ x.reshape(-1, x.shape[-1])
        codes = unpack_codes(packed)
        grad_grid = torch.zeros_like(grid).scatter_add_(
            2, codes, grad_w.to(grid.dtype).view(codes.shape)
        )
        return grad_x, grad_grid, None


def weighted_lloyd(values: torch.Tensor, weights: torch.Tensor, k: int, iterations: int):
    """Centroids (groups x k) of each row of `values` (groups x m) under per-column
    weights (groups x m), initialised at weighted quantiles; and the nearest codes."""
    order = torch.argsort(values, dim=1)
    sorted_v = torch.gather(values, 1, order)
    cum = torch.cumsum(torch.gather(weights, 1, order), dim=1)
    targets = (torch.arange(k, dtype=values.dtype) + 0.5) / k * cum[:, -1:]
    idx = torch.searchsorted(cum, targets).clamp(max=values.shape[1] - 1)
    centroids = torch.gather(sorted_v, 1, idx)
    for _ in range(iterations):
        codes = (values[:, :, None] - centroids[:, None, :]).abs().argmin(dim=2)
        onehot = torch.nn.functional.one_hot(codes, k).to(values.dtype)
        mass = (onehot * weights[:, :, None]).sum(1)
        sums = (onehot * (weights * values)[:, :, None]).sum(1)
        centroids = torch.where(mass > 0, sums / mass.clamp_min(1e-30), centroids)
    codes = (values[:, :, None] - centroids[:, None, :]).abs().argmin(dim=2)
    return centroids, codes


class SketchedLinear(nn.Linear):
    """A linear whose weight is its rows' lookup tables (trainable) and 4-bit codes."""

    def __init__(self, linear: nn.Linear, p: SketchParams, column_weight: torch.Tensor):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        if linear.in_features % (2 * p.gpr):
            raise ValueError(
                f"sketch-to-adapt needs d_in ({linear.in_features}) divisible by 2 x gpr ({p.gpr})"
            )
        w = linear.weight.detach().float()
        rows, per = w.shape[0], w.shape[1] // p.gpr
        values = w.reshape(rows * p.gpr, per)
        weights = column_weight.float().reshape(p.gpr, per).repeat(rows, 1)
        grid, codes = weighted_lloyd(values, weights, 2**p.bits, p.lloyd_iterations)
        dtype = linear.weight.dtype
        self.grid = nn.Parameter(grid.view(rows, p.gpr, -1).to(dtype))
        self.register_buffer("codes", pack_codes(codes.view(rows, p.gpr, per)))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        if self.bias is not None:
            self.bias.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        with torch.no_grad():
            return gather_weight(self.grid, self.codes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The tables may be fp32 on a bf16 base (the engine's cast): compute in their
        # dtype, return the input's.
        out = _SketchMatmul.apply(x.to(self.grid.dtype), self.grid, self.codes)
        out = out if self.bias is None else out + self.bias.to(out.dtype)
        return out.to(x.dtype)


def column_weights(model, ctx: PrepareContext, targets, batches: int, damping: float) -> dict:
    """1 / diag(H^-1) per input column of each target, H = X^T X + damping x mean diag."""
    if ctx.train_batches is None:
        raise ValueError("sketch-to-adapt needs training batches for its calibration")
    hessians = {name: torch.zeros(lin.in_features, lin.in_features) for name, lin in targets}

    def accumulate(name):
        def hook(_module, inputs, _output) -> None:  # returns None: the output stands
            hessians[name].add_(_gram(inputs[0]))

        return hook

    hooks = [lin.register_forward_hook(accumulate(name)) for name, lin in targets]
    with torch.no_grad():
        for i, batch in enumerate(ctx.train_batches()):
            if i == batches:
                break
            model(**batch)
    for h in hooks:
        h.remove()
    out = {}
    for name, h in hessians.items():
        h = h + damping * h.diagonal().mean().clamp_min(1e-8) * torch.eye(len(h))
        out[name] = 1.0 / torch.linalg.inv(h).diagonal()
    return out


def _gram(x: torch.Tensor) -> torch.Tensor:
    flat = x.detach().reshape(-1, x.shape[-1]).float().cpu()
    return flat.T @ flat


class SketchToAdapt(Method):
    Params = SketchParams

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        p = self.params
        targets = find_targets(model.backbone, ctx.preset.resolve_targets(p.targets))
        weights = column_weights(model, ctx, targets, p.calibration_batches, p.damping)
        for name, linear in targets:
            replace_module(model.backbone, name, SketchedLinear(linear, p, weights[name]))
        return Prepared(
            model=model,
            adapter_state=lambda: trainable_state(model),
            load_adapter_state=lambda state: load_state_strict(model, state),
            base_bytes=lambda: module_bytes(model.backbone),
        )

    def expected_trainable_params(self, shapes) -> int:
        """One table of 2^bits values per group of every row."""
        return sum(d_out * self.params.gpr * 2**self.params.bits for d_out, _ in shapes)
