"""SaRA (progressive sparse low-rank adaptation), after its authors' code
(sjtuplayer/SaRA: optim/adamw.py, the default "unstructural backpropagation" path, and
optim/adamw2.py, the same method with dense gradients).

The weights whose magnitude is below `threshold` (the paper: the smallest 10-20% do not
contribute) are trained again, everything else stays frozen: W = W0 (1 - M) + scatter(v),
v initialised to W0's own entries, so the model is unchanged at the start and AdamW
(decoupled decay on the weights themselves) moves only v. A nuclear-norm penalty
lambda ||W * M||_* on one randomly chosen layer per step (of those with min(d_out, d_in)
> 64) keeps the sparse update low-rank. Progressive adjustment: at `progressive_at` of
the run the entries whose magnitude grew past the threshold are frozen where they are
and the rest keep training (with their optimiser state), as optim/adamw2.py does. Unstructured backpropagation:
the values are the only trainable tensor, and their gradient is gathered block by block
(`grad_chunk_rows` output rows at a time), so neither a dense weight gradient nor dense
optimiser state exists.
"""

from __future__ import annotations

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from suite.methods.adapters import TargetedParams, adapter_prepared, wrap_targets
from suite.methods.api import Method, Prepared, StepHooks
from suite.methods.sparse import SparseDeltaLinear, load_sparse_state, sparse_state


class SaRAParams(TargetedParams):
    threshold: PositiveFloat | None = 2e-3  # the scripts' --threshold (absolute |w|)
    fraction: float | None = Field(default=None, gt=0.0, lt=1.0)  # or: smallest share
    lambda_rank: NonNegativeFloat = 5e-4  # the scripts' --lambda_rank
    progressive_at: float | None = Field(default=0.5, gt=0.0, lt=1.0)  # None: never
    min_rank_dim: PositiveInt = 64  # low_rank_ids: 2-D with min(shape) > 64
    grad_chunk_rows: PositiveInt = 64
    targets: str | list[str] = "all-linear"

    @model_validator(mode="after")
    def _one_rule(self) -> SaRAParams:
        if (self.threshold is None) == (self.fraction is None):
            raise ValueError("give exactly one of threshold (absolute |w|) and fraction")
        return self


def small_entries(weight: torch.Tensor, p: SaRAParams) -> torch.Tensor:
    """Flat indices of the entries SaRA re-trains: |w| < threshold, or the smallest share."""
    mag = weight.detach().abs().reshape(-1)
    if p.threshold is not None:
        idx = torch.nonzero(mag < p.threshold).reshape(-1)
    else:
        idx = torch.topk(mag.float(), max(1, int(p.fraction * mag.numel())), largest=False).indices
    if len(idx) == 0:
        raise ValueError(f"no weight of a {tuple(weight.shape)} layer is below the threshold")
    return idx


class SaRALinear(SparseDeltaLinear):
    """W = W0 (1 - M) + scatter(v): the selected entries are cut out of the frozen base
    and live in `values`, so v holds the weights themselves (as the reference's trainable
    tensors do) and weight decay acts on them."""

    def __init__(self, base, indices, chunk_rows: int):
        super().__init__(base, indices)
        with torch.no_grad():
            flat = self.base.weight.view(-1)
            self.values.copy_(flat[self.indices.long()])
            flat[self.indices.long()] = 0
        self.grad_chunk_rows = chunk_rows
        # Entries the progressive adjustment froze (they keep their value from then on).
        self.register_buffer("frozen", torch.zeros_like(self.values, dtype=torch.bool))

    def sparse_matrix(self) -> torch.Tensor:
        """W * M (d_out x d_in) over the entries still training, differentiable in the
        values (the nuclear-norm term)."""
        values = torch.where(self.frozen, torch.zeros_like(self.values), self.values)
        delta = torch.zeros_like(self.base.weight, dtype=values.dtype).view(-1)
        return delta.index_add(0, self.indices.long(), values).view_as(self.base.weight)


class SaRAHooks(StepHooks):
    def __init__(self, layers: list[SaRALinear], p: SaRAParams, gen: torch.Generator):
        self.layers, self.p, self.gen = layers, p, gen
        self.rank_layers = [m for m in layers if min(m.base.weight.shape) > p.min_rank_dim]
        self.progressive_step: int | None = None
        self._kept: list[torch.Tensor] = []
        self.chosen: list[int] = []  # the layer each step's nuclear-norm term used

    def on_train_start(self, total_steps: int) -> None:
        if self.p.progressive_at is not None:
            self.progressive_step = max(1, int(self.p.progressive_at * total_steps))

    def choose(self) -> int:
        """random.choice(low_rank_ids) of the reference, from the cell's generator."""
        return int(torch.randint(0, len(self.rank_layers), (1,), generator=self.gen))

    def extra_loss(self) -> torch.Tensor | None:
        if not self.p.lambda_rank or not self.rank_layers or not self.layers[0].training:
            return None
        i = self.choose()
        self.chosen.append(i)
        layer = self.rank_layers[i]
        if layer.k <= 100:  # adamw2: only when mask.sum() > 100
            return None
        return self.p.lambda_rank * torch.linalg.svdvals(layer.sparse_matrix().float()).sum()

    def before_optimizer_step(self, step: int) -> None:
        self._kept = [layer.values.detach()[layer.frozen].clone() for layer in self.layers]

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        for layer, kept in zip(self.layers, self._kept, strict=True):
            layer.values[layer.frozen] = kept  # frozen entries stay where they were
        if self.progressive_step is not None and step + 1 == self.progressive_step:
            self.reselect()

    @torch.no_grad()
    def reselect(self) -> None:
        """adamw2's update_mask: the new mask is |w| < threshold AND the old mask; entries
        that grew past the threshold freeze, the rest keep training (and their moments).
        With `fraction` there is no threshold and nothing freezes."""
        if self.p.threshold is None:
            return
        for layer in self.layers:
            layer.frozen |= layer.values.abs() >= self.p.threshold


def sara_optimizer(named, lr, weight_decay):
    """torch AdamW (the reference's is torch's AdamW algorithm) with the values in the
    decaying group: they are weights, which the reference decays."""
    values = [p for n, p in named if n.endswith(".values")]
    decays = [p for n, p in named if not n.endswith(".values") and p.ndim >= 2]
    rest = [p for n, p in named if not n.endswith(".values") and p.ndim < 2]
    groups = [
        {"params": values + decays, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


class SaRA(Method):
    Params = SaRAParams

    def prepare(self, model, ctx) -> Prepared:
        p = self.params
        patterns = ctx.preset.resolve_targets(p.targets)
        layers = [
            layer
            for _, layer in wrap_targets(
                model,
                patterns,
                lambda _, lin: SaRALinear(lin, small_entries(lin.weight, p), p.grad_chunk_rows),
            )
        ]
        prepared = adapter_prepared(model, hooks=SaRAHooks(layers, p, ctx.generator(7)))
        prepared.adapter_state = lambda: sparse_state(model)
        prepared.load_adapter_state = lambda state: load_sparse_state(model, state)
        prepared.make_optimizer = sara_optimizer
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        if self.params.fraction is None:
            raise ValueError("with an absolute threshold the count depends on the weights")
        return sum(max(1, int(self.params.fraction * o * i)) for o, i in shapes)
