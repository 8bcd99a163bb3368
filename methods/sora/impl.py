"""SoRA: LoRA with a sparse gate, y = W0 x + s B (g * A x), pruned to a plain LoRA.

Follows TsinghuaC3I/SoRA: `src/lora.py` (gate ~ N(0, 1) of shape r, A Kaiming-uniform,
B zero, s = alpha / r), `src/trainer.py` (an L1 penalty lambda * mean|g| added to the
loss) and `src/sparse_optimizer.py` (after the gate's Adam step, a soft threshold with
lambda_2; the gate carries no weight decay). The optional threshold schedule is the
repository's `lambda_schedule` ("linear" / "log_linear" from lambda_2 to `max_lambda` in
`lambda_num` stages), here spread evenly over the training steps.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    AdapterLinear,
    LowRankUpdateParams,
    adapter_prepared,
    load_state_strict,
    wrap_targets,
)
from suite.methods.api import Method, Prepared, StepHooks
from suite.methods.gate_threshold import threshold_step
from suite.methods.sparse import PerEntryAdamW


class SoRAParams(LowRankUpdateParams):
    sparse_lambda: NonNegativeFloat = 1e-3  # L1 penalty on the gates (trainer.py)
    sparse_lambda_2: NonNegativeFloat = 1e-3  # soft threshold after each step
    schedule: Literal["none", "linear", "log_linear"] = "none"
    max_lambda: PositiveFloat = 7e-4
    lambda_num: PositiveInt = 7
    prune_at_end: bool = True


class SoRALinear(AdapterLinear):
    """y = W0 x + s * B(g * A(dropout(x))); after `prune()`, a plain LoRA with g folded in."""

    def __init__(self, base: nn.Linear, p: SoRAParams):
        super().__init__(base)
        self.scaling = p.alpha / p.r
        self.dropout = nn.Dropout(p.dropout) if p.dropout > 0 else nn.Identity()
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_A = nn.Parameter(torch.empty(p.r, base.in_features, dtype=dtype, device=device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, p.r, dtype=dtype, device=device))
        self.gate = nn.Parameter(torch.randn(p.r, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @property
    def rank(self) -> int:
        return int(self.lora_A.shape[0])

    def update(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(x) @ self.lora_A.T
        if self.gate is not None:
            h = h * self.gate
        return (h @ self.lora_B.T) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        b = self.lora_B if self.gate is None else self.lora_B * self.gate
        return (b @ self.lora_A) * self.scaling

    @torch.no_grad()
    def prune(self, keep: torch.Tensor | None = None) -> None:
        """Drop ranks whose gate is zero and fold the gate into B: a plain LoRA remains."""
        if self.gate is None:
            return
        keep = self.gate != 0 if keep is None else keep
        a, b = self.lora_A[keep].clone(), (self.lora_B * self.gate)[:, keep].clone()
        del self.gate
        self.gate = None
        self.lora_A = nn.Parameter(a)
        self.lora_B = nn.Parameter(b)


def sora_optimizer(named_params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """run_glue.py's two optimisers as groups of one: transformers.AdamW (eps 1e-8,
    weight decay except biases and LayerNorm) for the rest, SparseAdamW's AdamW (its
    default eps 1e-6, no weight decay, same lr) for the gates; the threshold step itself
    runs in `SoRAHooks.after_optimizer_step`. Hugging Face's AdamW is PerEntryAdamW with
    untouched ages (bias correction in the step size, decay after the update)."""
    named = [(n, p) for n, p in named_params if p.requires_grad]
    gates = [p for n, p in named if n.endswith(".gate")]
    rest = [(n, p) for n, p in named if not n.endswith(".gate")]
    no_decay = [p for n, p in rest if "bias" in n or "LayerNorm" in n or "layer_norm" in n]
    decay = [p for n, p in rest if not any(p is q for q in no_decay)]
    groups = [
        {"params": decay, "weight_decay": weight_decay, "eps": 1e-8},
        {"params": no_decay, "weight_decay": 0.0, "eps": 1e-8},
        {"params": gates, "weight_decay": 0.0, "eps": 1e-6},
    ]
    return PerEntryAdamW([g for g in groups if g["params"]], lr=lr)


def threshold_schedule(p: SoRAParams) -> np.ndarray:
    """The lambda_2 values SparseAdamW._build_lambda_list would step through."""
    if p.schedule == "none":
        return np.array([p.sparse_lambda_2])
    if p.schedule == "linear":
        return np.linspace(p.sparse_lambda_2, p.max_lambda, p.lambda_num)
    return np.log(np.linspace(np.exp(p.sparse_lambda_2), np.exp(p.max_lambda), p.lambda_num))


class SoRAHooks(StepHooks):
    def __init__(self, layers: list[SoRALinear], p: SoRAParams):
        self.layers, self.p = layers, p
        self.lambdas = threshold_schedule(p)
        self.total = 1

    def on_train_start(self, total_steps: int) -> None:
        self.total = max(total_steps, 1)

    def gates(self) -> list[torch.Tensor]:
        return [m.gate for m in self.layers if m.gate is not None]

    def extra_loss(self) -> torch.Tensor | None:
        gates = self.gates()
        if not self.p.sparse_lambda or not gates:
            return None
        flat = torch.cat([g.reshape(-1) for g in gates])
        return self.p.sparse_lambda * flat.abs().sum() / flat.numel()

    def threshold(self, step: int) -> float:
        stage = min(step * len(self.lambdas) // self.total, len(self.lambdas) - 1)
        return float(self.lambdas[stage])

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        lam = self.threshold(step)
        if lam <= 0:
            return
        for g in self.gates():
            threshold_step(g, lam)

    def on_train_end(self) -> None:
        if self.p.prune_at_end:
            for m in self.layers:
                m.prune()


def load_sora_state(model: nn.Module, layers: dict[str, SoRALinear], state: dict) -> None:
    """Load an adapter, pruning layers whose saved state has no gate (a pruned adapter)."""
    for name, layer in layers.items():
        a = state.get(f"{name}.lora_A")
        if a is not None and f"{name}.gate" not in state and layer.gate is not None:
            layer.prune(keep=torch.arange(layer.rank) < a.shape[0])
    load_state_strict(model, state)


class SoRA(Method):
    Params = SoRAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        wrapped = wrap_targets(model, patterns, lambda _, lin: SoRALinear(lin, self.params))
        layers = [m for _, m in wrapped]
        prepared = adapter_prepared(model, SoRAHooks(layers, self.params))
        named = {f"backbone.{n}": m for n, m in wrapped}
        prepared.load_adapter_state = lambda state: load_sora_state(model, named, state)
        prepared.make_optimizer = sora_optimizer
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out + 1) for d_out, d_in in shapes)
