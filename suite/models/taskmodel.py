"""The model a cell trains: a backbone plus the head its architecture needs.

Heads are looked up by the backbone's architecture (`HEADS`), never by a model's name:

- encoder: pooling over token states, then a linear head (classes, or 1 for regression);
- vision: the same on patch states from `pixel_values` (ViT-style backbones);
- causal-lm: no new parameters; the backbone's own LM head scores the target tokens of
  each sequence (summed log-likelihood), which multiple-choice tasks compare across
  choices and generation tasks train on and decode from; one-token choices after a shared
  prompt are read off one forward pass of the prompt.

Methods adapt `model.backbone`; `model.head` holds whatever the head adds (may be empty).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """Sentence representation from token states (mean over real tokens, first, or last)."""
    if how == "cls":
        return hidden[:, 0]
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    if how == "last":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def architecture_of(backbone: nn.Module) -> str:
    """encoder | vision | causal-lm, from what the transformers model declares about itself."""
    if getattr(backbone, "main_input_name", "input_ids") == "pixel_values":
        return "vision"
    can_generate = getattr(backbone, "can_generate", None)
    if callable(can_generate) and can_generate():
        return "causal-lm"
    return "encoder"


def _linear_head(backbone: nn.Module, num_outputs: int, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(backbone.config.hidden_size, num_outputs)
    with torch.no_grad():
        # Seeded so the head, like everything else, is a function of the cell's seed.
        head.weight.normal_(0.0, 0.02, generator=generator)
        head.bias.zero_()
    # The first floating tensor's dtype (a stored base's int8 / fp8 codes are not one).
    return head.to(next(p.dtype for p in backbone.parameters() if p.is_floating_point()))


def _encoder_forward(model: TaskModel, batch: dict) -> torch.Tensor:
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if batch.get("token_type_ids") is not None:
        kwargs["token_type_ids"] = batch["token_type_ids"]
    hidden = model.backbone(**kwargs).last_hidden_state
    return model.head(pool(hidden, batch["attention_mask"], model.pooling))


def _vision_forward(model: TaskModel, batch: dict) -> torch.Tensor:
    pixels = batch["pixel_values"].to(next(model.backbone.parameters()).dtype)
    hidden = model.backbone(pixel_values=pixels).last_hidden_state
    return model.head(pool(hidden, None, model.pooling))


def target_log_likelihood(model: TaskModel, batch: dict) -> torch.Tensor:
    """Summed log-probability of each sequence's target tokens (target_mask == 1)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    logits = model.backbone(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = F.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (logp * batch["target_mask"][:, 1:].to(logp.dtype)).sum(dim=-1)


def _logits_at(backbone: nn.Module, batch: dict, positions: torch.Tensor) -> torch.Tensor:
    """The LM head's logits at the sequence `positions` (1-D, the same for every row):
    (batch, len(positions), vocab). A backbone that takes `logits_to_keep` (transformers'
    causal LMs) applies its head there only: on a 49k-token vocabulary the head is a
    fifth of a small LM's forward."""
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "logits_to_keep" in inspect.signature(backbone.forward).parameters:
        return backbone(**kwargs, logits_to_keep=positions).logits
    return backbone(**kwargs).logits[:, positions]


def prompt_choice_scores(model: TaskModel, batch: dict) -> torch.Tensor:
    """(examples, choices): the log-probability of each one-token choice (`choice_tokens`)
    after its example's prompt, from one forward pass of the prompt (the shared-prompt
    form of suite/tasks/encoding.py); the same scores as `target_log_likelihood` of each
    prompt + choice sequence."""
    last = _last_positions(batch)
    positions, column = torch.unique(last, return_inverse=True)
    logits = _logits_at(model.backbone, batch, positions)
    rows = torch.arange(len(last), device=last.device)
    logp = F.log_softmax(logits[rows, column].float(), dim=-1)
    return logp.gather(-1, batch["choice_tokens"])


def _last_positions(batch: dict) -> torch.Tensor:
    return batch["attention_mask"].sum(dim=1) - 1  # prompts are right-padded


def head_positions(batch: dict) -> tuple[int, int]:
    """(positions the LM head runs at, positions it is needed at) in a causal-LM batch,
    for the FLOP count (suite/train/flops.py). Next-token and per-choice batches: every
    token, and the real ones. The shared-prompt form (`choice_tokens`): `logits_to_keep`
    takes one set of positions for the whole batch, so the head runs at the batch's
    distinct last positions in every row, and is needed at one position per row."""
    if "choice_tokens" in batch:
        last = _last_positions(batch)
        return len(last) * len(torch.unique(last)), len(last)
    ids, mask = batch["input_ids"], batch.get("attention_mask")
    return ids.numel(), int(mask.sum()) if mask is not None else ids.numel()


def _lm_forward(model: TaskModel, batch: dict) -> torch.Tensor:
    counts = batch.get("choice_counts")
    if "choice_tokens" in batch:
        scores = prompt_choice_scores(model, batch)
        fewer = torch.arange(scores.shape[1], device=counts.device) >= counts[:, None]
        return scores.masked_fill(fewer, -1e9)
    scores = target_log_likelihood(model, batch)
    if counts is None:
        return scores
    # (examples, most choices), -1e9 where an example has fewer (never chosen, and finite
    # so merged-vs-unmerged differences stay defined): compared like class logits.
    out = scores.new_full((len(counts), int(counts.max())), -1e9)
    example = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    out[example, torch.arange(len(scores), device=scores.device) - starts[example]] = scores
    return out


# architecture -> (build the head, forward)
HEADS = {
    "encoder": (_linear_head, _encoder_forward),
    "vision": (_linear_head, _vision_forward),
    "causal-lm": (lambda backbone, n, seed: nn.Identity(), _lm_forward),
}


class TaskModel(nn.Module):
    """backbone + head; `num_outputs` is the class count (1 for regression; unused by LMs)."""

    def __init__(self, backbone: nn.Module, num_outputs: int, pooling: str, seed: int):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.architecture = architecture_of(backbone)
        build, self._forward = HEADS[self.architecture]
        self.head = build(backbone, num_outputs, seed)

    def forward(self, input_ids=None, attention_mask=None, **batch) -> torch.Tensor:
        return self._forward(
            self, {"input_ids": input_ids, "attention_mask": attention_mask, **batch}
        )
