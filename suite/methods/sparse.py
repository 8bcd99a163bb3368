"""Shared machinery for sparse fine-tuning: a linear layer whose update is stored as
flat indices + values, and mask selection (random, weight magnitude, gradient, SNIP).

Why a custom autograd function: the trainable tensor is the value vector (k entries),
so the optimiser state is k-sized, never d_out x d_in. The dense weight W0 + scatter(v)
exists only transiently inside forward and backward (as in SpIEL's `linear_sd` kernel),
and the dense weight gradient is formed only to gather its k entries (or, while a
method asks for it through `grad_hook`, to score regrowth candidates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods.adapters import AdapterLinear, wrap_targets
from suite.methods.api import PrepareContext
from suite.methods.optimizers import update_moments, with_grads

MaskKind = Literal["random", "magnitude", "gradient", "snip"]
GradHook = Callable[[torch.Tensor], None]


def index_dtype(numel: int) -> torch.dtype:
    """int32 indices halve the saved adapter where the matrix allows it (SpIEL does this)."""
    return torch.int32 if numel < 2**31 else torch.int64


def budget(d_out: int, d_in: int, r: int | None, density: float | None) -> int:
    """Nonzeros per layer: `density` of the matrix if given, else LoRA's r(d_in + d_out)."""
    k = int(density * d_out * d_in) if density is not None else int(r or 0) * (d_in + d_out)
    if not 0 < k <= d_out * d_in:
        raise ValueError(f"sparse budget {k} does not fit a {d_out}x{d_in} matrix")
    return k


class _SparseDeltaLinearFn(torch.autograd.Function):
    """y = x (W0 + scatter(idx, v))^T + b, saving only x (not the dense weight)."""

    @staticmethod
    def forward(ctx, x, weight, bias, values, indices, hook, chunk_rows):
        ctx.save_for_backward(x, weight, values, indices)
        ctx.hook, ctx.chunk_rows = hook, chunk_rows
        return F.linear(x, _densify(weight, values, indices), bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, values, indices = ctx.saved_tensors
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out @ _densify(weight, values, indices).to(grad_out.dtype)
        g = grad_out.reshape(-1, grad_out.shape[-1])
        # Under autocast the forward ran in bf16/fp16 and grad_out has that dtype, while x
        # may have come in as fp32 (backward runs outside autocast): the weight gradient is
        # computed in grad_out's dtype, as autocast's own linear backward does.
        xs = x.reshape(-1, x.shape[-1]).to(g.dtype)
        if ctx.hook is None and ctx.chunk_rows and ctx.needs_input_grad[3]:
            grad_values = _entry_grads(g, xs, indices, ctx.chunk_rows).to(values.dtype)
        elif ctx.needs_input_grad[3] or ctx.hook is not None:
            g2d = g.T @ xs
            if ctx.hook is not None:
                ctx.hook(g2d)
            grad_values = g2d.reshape(-1)[indices.long()].to(values.dtype)
        return grad_x, None, None, grad_values, None, None, None


def _entry_grads(
    g: torch.Tensor, xs: torch.Tensor, indices: torch.Tensor, rows: int
) -> torch.Tensor:
    """The weight gradient at the (sorted, row-major) `indices` only, `rows` output rows
    at a time: no d_out x d_in gradient is ever formed (SaRA's unstructured
    backpropagation), only a rows x d_in block."""
    d_out, d_in = g.shape[1], xs.shape[1]
    idx = indices.long()
    bounds = torch.searchsorted(idx, torch.arange(0, d_out + rows, rows, device=idx.device) * d_in)
    out = torch.empty(len(idx), dtype=g.dtype, device=g.device)
    for b, r0 in enumerate(range(0, d_out, rows)):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        if lo < hi:
            block = g[:, r0 : r0 + rows].T @ xs
            out[lo:hi] = block.reshape(-1)[idx[lo:hi] - r0 * d_in]
    return out


@torch.no_grad()
def _densify(weight: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    dense = weight.detach().clone()
    dense.view(-1).index_add_(0, indices.long(), values.detach().to(dense.dtype))
    return dense


class SparseDeltaLinear(AdapterLinear):
    """A frozen linear plus a sparse update: W = W0 + scatter(indices, values).

    `values` (k) is the only trainable tensor; `indices` (k, flat row-major positions) is
    a buffer so it travels with the saved adapter and may change during training (SpIEL).
    `grad_hook`, when set, receives the dense weight gradient of each backward pass.
    """

    def __init__(self, base: nn.Linear, indices: torch.Tensor):
        super().__init__(base)
        numel = base.weight.numel()
        idx = torch.sort(indices.reshape(-1).long()).values.to(index_dtype(numel))
        self.register_buffer("indices", idx.to(base.weight.device))
        self.values = nn.Parameter(
            torch.zeros(len(idx), dtype=base.weight.dtype, device=base.weight.device)
        )
        self.grad_hook: GradHook | None = None
        # Rows per block of the entry-gradient computation; None: one dense gradient.
        self.grad_chunk_rows: int | None = None

    @property
    def k(self) -> int:
        return int(self.values.numel())

    def delta_weight(self) -> torch.Tensor:
        delta = torch.zeros_like(self.base.weight).view(-1)
        return delta.index_add(0, self.indices.long(), self.values).view_as(self.base.weight)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.delta_weight().to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        return _SparseDeltaLinearFn.apply(
            x,
            self.base.weight,
            self.base.bias,
            self.values,
            self.indices,
            self.grad_hook,
            self.grad_chunk_rows,
        )

    @torch.no_grad()
    def set_entries(self, indices: torch.Tensor, values: torch.Tensor) -> None:
        """Replace the support and values in place (the Parameter object is kept, so the
        optimiser still holds it; callers reset its state)."""
        dtype = index_dtype(self.base.weight.numel())
        self.indices = indices.to(self.indices.device, dtype).clone()
        self.values.data = values.to(self.values.device, self.values.dtype).clone()


def sparse_adapters(model: nn.Module) -> list[tuple[str, SparseDeltaLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SparseDeltaLinear)]


def sparse_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The saved adapter: every trainable tensor plus each sparse layer's indices."""
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for name, layer in sparse_adapters(model):
        state[f"{name}.indices"] = layer.indices.detach().clone()
    return state


def load_sparse_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load values + indices (whose sizes may differ from a fresh model's), then the rest."""
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise KeyError(f"adapter tensors not in the model: {unknown[:5]}")
    rest = dict(state)
    for name, layer in sparse_adapters(model):
        if f"{name}.values" in rest:
            layer.set_entries(rest.pop(f"{name}.indices"), rest.pop(f"{name}.values"))
    with torch.no_grad():
        for name, tensor in rest.items():
            own[name].copy_(tensor)


def wrap_sparse(
    model: nn.Module, patterns: list[str], pick: Callable[[str, nn.Linear], torch.Tensor]
) -> list[tuple[str, SparseDeltaLinear]]:
    """Replace each target linear by a SparseDeltaLinear on the indices `pick` returns."""
    return wrap_targets(model, patterns, lambda n, lin: SparseDeltaLinear(lin, pick(n, lin)))


# ---- mask selection -------------------------------------------------------------------


def top_k_indices(score: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(score.reshape(-1).float(), k, sorted=False).indices


def random_indices(numel: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """PEFT's SHiRA `random_mask`: the first k of a seeded random permutation."""
    return torch.randperm(numel, generator=generator)[:k]


def accumulate_target_grads(
    model: nn.Module, targets: list[tuple[str, nn.Linear]], ctx: PrepareContext, n_batches: int
) -> dict[str, torch.Tensor]:
    """Sum of the task-loss gradients of each target weight over `n_batches` batches.

    The weights are made trainable only for this pass and frozen again; every gradient
    the pass leaves behind (head included) is cleared so training starts clean.
    """
    if ctx.train_batches is None or ctx.loss_fn is None:
        raise ValueError("gradient-based masks need ctx.train_batches and ctx.loss_fn")
    flags = {id(p): p.requires_grad for p in model.parameters()}
    for _, linear in targets:
        linear.weight.requires_grad_(True)
    sums = {name: torch.zeros_like(lin.weight) for name, lin in targets}
    batches: Iterator[dict] = ctx.train_batches()
    for _ in range(n_batches):
        batch = next(batches)
        model.zero_grad(set_to_none=True)
        ctx.loss_fn(model, batch).backward()
        for name, linear in targets:
            sums[name] += linear.weight.grad
    for p in model.parameters():
        p.grad = None
        p.requires_grad_(flags[id(p)])
    return sums


def select_masks(
    model: nn.Module,
    targets: list[tuple[str, nn.Linear]],
    ks: dict[str, int],
    kind: MaskKind,
    ctx: PrepareContext,
    n_batches: int = 4,
) -> dict[str, torch.Tensor]:
    """Flat indices per target: random, top |W0|, top |sum grad| or top |W0 * sum grad|
    (SNIP's connection sensitivity).

    The random mask is PEFT's `random_mask`: every layer draws from a generator freshly
    seeded with the seed (PEFT's `random_seed`, here the cell's), so layers of the same
    shape get the same mask.
    """
    if kind == "random":
        return {
            n: random_indices(lin.weight.numel(), ks[n], torch.Generator().manual_seed(ctx.seed))
            for n, lin in targets
        }
    if kind == "magnitude":
        return {n: top_k_indices(lin.weight.detach().abs(), ks[n]) for n, lin in targets}
    grads = accumulate_target_grads(model, targets, ctx, n_batches)
    if kind == "gradient":
        return {n: top_k_indices(grads[n].abs(), ks[n]) for n, _ in targets}
    return {n: top_k_indices((grads[n] * lin.weight.detach()).abs(), ks[n]) for n, lin in targets}


# ---- RigL-style prune and regrow (SpIEL) ----------------------------------------------


def _flags(numel: int, positions: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(numel, dtype=torch.bool, device=positions.device)
    mask[positions] = True
    return mask


@torch.no_grad()
def prune_and_regrow(
    layer: SparseDeltaLinear, candidates: torch.Tensor, scores: torch.Tensor, rate: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the `rate` share of smallest-|value| entries, grow the best-scoring candidates.

    A line-by-line port of SpIEL's `SftSelector.select_rigl`: candidates already active
    (and not dropped) are skipped; a position both dropped and regrown keeps its slot and
    value; regrown values start at zero. The support size never changes. Returns
    `(slots, grown)`: the positions in `values` that changed and, for each, the index into
    `candidates` of the entry grown there (so callers can seed its optimiser state).
    """
    idx = layer.indices.long()
    n = int(layer.k * rate)
    empty = idx.new_zeros(0)
    if n == 0 or len(candidates) == 0:
        return empty, empty
    numel = layer.base.weight.numel()
    changing = torch.topk(layer.values.abs(), n, largest=False, sorted=True).indices
    outgoing = idx[changing]
    is_out = _flags(numel, outgoing)
    is_remaining = _flags(numel, idx) & ~is_out
    valid = torch.nonzero(~is_remaining[candidates.long()]).reshape(-1)
    pool = candidates.long()[valid]
    best = torch.topk(scores[valid].abs(), min(n, len(valid)), largest=True, sorted=True).indices
    incoming, grown = pool[best], valid[best]
    is_in = _flags(numel, incoming)
    changing = changing[~is_in[outgoing]]
    fresh = ~is_out[incoming]
    incoming, grown = incoming[fresh], grown[fresh]
    changing = changing[: len(incoming)]
    layer.indices[changing] = incoming.to(layer.indices.dtype)
    layer.values[changing] = 0.0
    return changing, grown


@torch.no_grad()
def seed_optimizer_entries(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, slots: torch.Tensor, seeds: dict
) -> None:
    """Overwrite per-entry optimiser state of `param` at `slots` (SpIEL's
    `update_optimizer`): each key of `seeds` names a state tensor of param's shape."""
    state = optimizer.state.get(param)
    if not state or len(slots) == 0:
        return  # no step taken yet: fresh entries start from the optimiser's own init
    missing = sorted(set(seeds) - set(state))
    if missing:
        raise ValueError(f"{type(optimizer).__name__} keeps no per-entry {missing} state")
    for key, value in seeds.items():
        state[key][slots] = value.to(state[key].dtype)


class PerEntryAdamW(torch.optim.Optimizer):
    """AdamW whose bias correction counts steps per entry, as SpIEL's `SftAdamW`.

    State per parameter: `age` (starting at 1), `exp_avg`, `exp_avg_sq`. A step:
    m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    p -= lr m / ((sqrt(v) + eps) (1 - b1^age) / sqrt(1 - b2^age)); then the decoupled decay
    p -= lr wd p (after the update, as SftAdamW and Hugging Face's AdamW do); age += 1.
    With untouched ages this is Hugging Face's AdamW. An entry that joins mid-run (SpIEL's
    regrowth) gets its own age and may start from seeded moments
    (`seed_optimizer_entries`), so its bias correction is its own rather than the global
    step's. eps defaults to SftAdamW's 1e-6.

    `active(p)`, when given, returns a boolean mask of the entries of `p` that take this
    step (None: all of them): the others keep their value, moments and age, as a
    parameter without a gradient does under AdamW. MoSA's modules share one tensor, and
    only the modules a step activated move (its reference keeps one tensor per module).
    """

    def __init__(
        self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, active=None
    ):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.active = active

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, p in with_grads(self):
            state = self.state[p]
            if not state:
                state["age"] = torch.ones_like(p)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            mask = self.active(p) if self.active is not None else None
            if mask is None:
                _adamw_entries(p, state, p.grad, group)
            else:
                saved = {k: v.clone() for k, v in state.items()} | {"p": p.detach().clone()}
                _adamw_entries(p, state, p.grad, group)
                keep = ~mask
                p.data[keep] = saved.pop("p")[keep]
                for key, old in saved.items():
                    state[key][keep] = old[keep]
        return loss


def _adamw_entries(p, state, grad, group) -> None:
    lr, wd, age = group["lr"], group["weight_decay"], state["age"]
    beta1, beta2 = group["betas"]
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    update_moments(exp_avg, exp_avg_sq, grad, (beta1, beta2))
    denom = exp_avg_sq.sqrt().add_(group["eps"])
    denom.mul_(1.0 - beta1**age).div_(torch.sqrt(1.0 - beta2**age))
    p.addcdiv_(exp_avg, denom, value=-lr)
    if wd > 0.0:
        p.add_(p, alpha=-lr * wd)
    age.add_(1.0)
