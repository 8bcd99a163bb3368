"""Scatterbrain: a trained model's softmax attention swapped for sparse + low-rank.

A compress stage rather than a model-architecture axis: Scatterbrain adds no weights and
needs no training, it approximates the attention a trained model already computes (the
paper's drop-in experiment on pretrained T2T-ViT and BigGAN), so the question it answers
is the compression stages' one: how much quality a trained cell keeps at a given
attention budget. An architecture axis would retrain every method's cells with the
approximation in the loop.

The swap goes through transformers' attention interface: the backbone's config selects
the attention function registered here (with the bidirectional SDPA mask), and every
attention module that calls it carries its own projection, drawn in call order on the
first calibration batch from the stage's seed (the reference draws one per attention
module once, on its first forward). The model's parameters are untouched.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import torch
from pydantic import Field, PositiveInt

from suite.plugins import sibling_names
from suite.posthoc.api import Compressed, CompressMethod, PosthocParams

# This method's own maths, in this folder (attention.py).
exact_pairs, orthogonal_gaussian, sblocal_attention = sibling_names(
    __file__, "attention.py", "exact_pairs", "orthogonal_gaussian", "sblocal_attention"
)

NAME = "peftbench_scatterbrain"
STATE = "_scatterbrain"


class ScatterbrainParams(PosthocParams):
    # The fly repository's LRA text-classification setting (configs/experiment/lra/textc/
    # sblocal.yaml): a 32-key band, 16 random features, softmax_eps 1e-4.
    local_context: PositiveInt = 32
    nb_features: PositiveInt = Field(default=16, multiple_of=2)
    softmax_eps: float = Field(default=1e-4, ge=0.0)


@dataclass
class AttentionState:
    projection: torch.Tensor
    local_context: int
    eps: float


@dataclass
class Swap:
    """compress()'s pass over the calibration set: modules met without a state get one
    (projections drawn in call order), and the band's share of the scores is counted."""

    params: ScatterbrainParams
    generator: torch.Generator
    exact: int = 0
    total: int = 0


_SWAP: ContextVar[Swap | None] = ContextVar("scatterbrain_swap", default=None)


def key_mask(mask: torch.Tensor | None, batch: int, keys: int, device) -> torch.Tensor:
    """(B, S) real keys from transformers' 4-D mask (bool: True attends; float: 0 attends),
    refusing a mask whose rows differ (causal or otherwise not a padding mask)."""
    if mask is None:
        return torch.ones(batch, keys, dtype=torch.bool, device=device)
    allowed = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0
    allowed = allowed.expand(batch, -1, keys)
    keep = allowed.any(dim=-2)
    if not bool((allowed == keep[:, None, :]).all()):
        raise ValueError(
            "scatterbrain approximates bidirectional attention over padded sequences; this "
            "model's attention mask is causal or not a padding mask"
        )
    return keep


def _state(module, head_dim: int, swap: Swap | None) -> AttentionState:
    state = getattr(module, STATE, None)
    if state is not None:
        return state
    if swap is None:
        raise RuntimeError(f"{type(module).__name__} uses {NAME} without a Scatterbrain state")
    p = swap.params
    projection = orthogonal_gaussian(p.nb_features // 2, head_dim, swap.generator)
    state = AttentionState(projection, p.local_context, p.softmax_eps)
    setattr(module, STATE, state)
    return state


def scatterbrain_attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
    """transformers' attention-function contract: (B, H, T, E) in, ((B, T, H, D), None) out."""
    if getattr(module, "is_causal", False):
        # A causal model's SDPA mask may be None (no padding), so the mask alone cannot tell.
        raise ValueError(f"scatterbrain here is bidirectional; {type(module).__name__} is causal")
    swap = _SWAP.get()
    state = _state(module, query.shape[-1], swap)
    temp = scaling if scaling is not None else query.shape[-1] ** -0.5
    keep = key_mask(attention_mask, query.shape[0], key.shape[-2], query.device)
    if swap is not None:
        exact, total = exact_pairs(keep, state.local_context)
        swap.exact, swap.total = swap.exact + exact, swap.total + total
    out = sblocal_attention(
        query.float(), key.float(), value.float(), keep,
        state.projection.to(query.device), state.local_context, temp, state.eps,
    )  # fmt: skip
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make NAME a transformers attention implementation (with the SDPA-style bool mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, scatterbrain_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


class Scatterbrain(CompressMethod):
    Params = ScatterbrainParams

    @torch.no_grad()
    def compress(self, model, ctx) -> Compressed:
        p = self.params
        if ctx.calibration is None or not ctx.calibration.batches:
            raise ValueError("scatterbrain draws its projections on a calibration batch")
        register()
        model.backbone.config._attn_implementation = NAME
        swap = Swap(p, torch.Generator().manual_seed(ctx.seed))
        token = _SWAP.set(swap)
        try:
            model.eval()
            for batch in ctx.calibration.batches:
                ctx.calibration.run(batch)
        finally:
            _SWAP.reset(token)
        swapped = sum(hasattr(m, STATE) for m in model.modules())
        if swapped == 0:
            raise ValueError("no attention module of this model goes through transformers' "
                             "attention interface, so scatterbrain cannot replace it")  # fmt: skip
        share = swap.exact / swap.total
        return Compressed(
            pruned=0,
            total=0,
            level=1 - share,
            level_label=f"band {p.local_context} + {p.nb_features} features",
            notes=f"{swapped} attention modules swapped; {share:.1%} of the calibration "
            "set's query-key scores exact (the band), the rest from random features",
        )
