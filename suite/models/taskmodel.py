"""The model a cell trains: a backbone, a pooling rule and a task head."""

from __future__ import annotations

import torch
from torch import nn


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Sentence representation from token states (mean over real tokens, first, or last)."""
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class TaskModel(nn.Module):
    """backbone -> pooling -> linear head; `num_outputs` is the class count (1 for regression)."""

    def __init__(self, backbone: nn.Module, num_outputs: int, pooling: str, seed: int):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        hidden = backbone.config.hidden_size
        generator = torch.Generator().manual_seed(seed)
        self.head = nn.Linear(hidden, num_outputs)
        with torch.no_grad():
            # Seeded so the head, like everything else, is a function of the cell's seed.
            self.head.weight.normal_(0.0, 0.02, generator=generator)
            self.head.bias.zero_()
        self.head.to(next(backbone.parameters()).dtype)

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**kwargs).last_hidden_state
        return self.head(pool(hidden, attention_mask, self.pooling))
