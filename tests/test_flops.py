"""The training FLOP estimate (suite/train/flops.py) counts a causal LM's head where it
runs: at every token of a next-token or per-choice batch, at the prompts' last positions
of a shared-prompt multiple-choice batch. Hand counts on a tiny random Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suite.models.taskmodel import head_positions
from suite.tasks.encoding import collate_choices
from suite.train.flops import linear_weights, output_head, train_flops
from tests.test_shared_prompt_choices import _encode, _model, _task

# _model(): hidden 32, intermediate 64, 2 layers, 4 heads of 8 with 2 KV heads, 64-token
# vocabulary, tied embeddings.
H, FF, LAYERS, KV, VOCAB = 32, 64, 2, 2 * 8, 64
BODY = LAYERS * (2 * H * H + 2 * H * KV + 3 * H * FF)  # q, o; k, v; gate, up, down
HEAD = VOCAB * H
CHOICES = ["positive", "negative"]


def test_the_head_is_counted_apart_from_the_body():
    model = _model()
    assert output_head(model) is model.backbone.lm_head
    assert linear_weights(model, skip=output_head(model)) == (BODY, BODY)
    assert linear_weights(output_head(model)) == (HEAD, HEAD)  # tied: the embedding trains
    assert output_head(nn.Sequential(nn.Linear(2, 2))) is None


def test_train_flops_counts_the_head_at_its_own_positions():
    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)
    q = model.backbone.model.layers[0].self_attn.q_proj.weight.requires_grad_(True)
    tokens, at = 100, 7
    assert train_flops(model, tokens, at) == tokens * (4 * BODY + 2 * q.numel()) + at * 4 * HEAD
    # Without head positions the head is counted at every token, as before.
    assert train_flops(model, tokens) == tokens * (4 * (BODY + HEAD) + 2 * q.numel())
    # An encoder-like model without an LM head: every linear at every token.
    plain = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    assert train_flops(plain, 10, 1) == 10 * 6 * (12 + 8)


def _head_rows(model, batch) -> int:
    """Positions the LM head actually ran at in a forward of `batch` (a hook's count)."""
    seen = []
    hook = model.backbone.lm_head.register_forward_hook(
        lambda m, args, out: seen.append(args[0].shape[:-1].numel())
    )
    try:
        out = model(**batch)
    finally:
        hook.remove()
    return sum(seen), out


@pytest.mark.parametrize("shared", [True, False])
def test_head_positions_are_where_the_head_runs(shared, monkeypatch):
    task, model = _task(CHOICES), _model()
    split = _encode(task, CHOICES, shared=shared, monkeypatch=monkeypatch)
    batch = collate_choices(split, np.arange(len(split)), 0)
    rows, scores = _head_rows(model, batch)
    run, needed = head_positions(batch)
    assert run == rows
    if shared:  # 4 prompts of 4 lengths: the head at 4 positions in each row, needed at 1
        last = batch["attention_mask"].sum(1) - 1
        assert len(torch.unique(last)) == 4
        assert (run, needed) == (4 * 4, 4)
    else:  # one sequence per (prompt, choice), the head at every token
        assert (run, needed) == (batch["input_ids"].numel(), int(batch["attention_mask"].sum()))
    F.cross_entropy(scores, batch["labels"]).backward()  # the batch trains as counted
