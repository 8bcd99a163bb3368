"""A training FLOP estimate, so achieved FLOP/s can be compared with a calibrated peak.

Counted from the linear layers only (they dominate a transformer's compute; attention
scores and element-wise ops are left out, so the figure is a slight underestimate):
per token, forward 2*W, gradient with respect to inputs 2*W, and gradient with respect
to weights 2*W_trainable, where W counts the weights of every nn.Linear and
W_trainable those that train. The runner counts it twice: on the tokens as the model ran
them (padding included: the matmuls run on it) and on real tokens only (the attention
mask's ones: the useful work), each with its fraction of the calibrated peak. A module
that is not an nn.Linear but does a linear layer's work (a pretraining method's
replacement, suite/methods/pretrain.py) declares `flop_weights`: its multiply-adds per
token, and of them those whose weight gradient is computed.

A causal LM's head (its vocabulary projection, `get_output_embeddings`) is counted at
the positions where it runs, not at every token: multiple-choice scoring in the
shared-prompt form runs it at the prompts' last positions only
(suite/models/taskmodel.py: head_positions). On SmolLM2-135M the head is a fifth of
the linear weights, so counting it at every token overstated such a cell's FLOPs.
"""

from __future__ import annotations

from torch import nn


def output_head(model: nn.Module) -> nn.Module | None:
    """The vocabulary projection of the (first) transformers LM inside `model`, or None
    (encoders, vision backbones, plain modules)."""
    for module in model.modules():
        get = getattr(module, "get_output_embeddings", None)
        head = get() if callable(get) else None
        if isinstance(head, nn.Module):
            return head
    return None


def linear_weights(model: nn.Module, skip: nn.Module | None = None) -> tuple[int, int]:
    """(all linear weights, trainable linear weights) of a model, leaving out `skip`'s."""
    skipped = {id(m) for m in skip.modules()} if skip is not None else set()
    total = trainable = 0
    for module in model.modules():
        if id(module) in skipped:
            continue
        if isinstance(module, nn.Linear):
            n = module.weight.numel()
            total += n
            trainable += n if module.weight.requires_grad else 0
        elif hasattr(module, "flop_weights"):
            n, n_trainable = module.flop_weights
            total += n
            trainable += n_trainable
    return total, trainable


def train_flops(model: nn.Module, tokens: int, head_positions: int | None = None) -> float:
    """Estimated FLOPs of training `model` on `tokens` tokens (padded or real), its LM
    head (if any) at `head_positions` positions (default: at every token)."""
    head = output_head(model)
    total, trainable = linear_weights(model, skip=head)
    flops = tokens * (4 * total + 2 * trainable)
    if head is not None:
        head_total, head_trainable = linear_weights(head)
        at = tokens if head_positions is None else head_positions
        flops += at * (4 * head_total + 2 * head_trainable)
    return float(flops)
