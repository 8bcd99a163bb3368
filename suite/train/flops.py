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
"""

from __future__ import annotations

from torch import nn


def linear_weights(model: nn.Module) -> tuple[int, int]:
    """(all linear weights, trainable linear weights) of a model."""
    total = trainable = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            n = module.weight.numel()
            total += n
            trainable += n if module.weight.requires_grad else 0
        elif hasattr(module, "flop_weights"):
            n, n_trainable = module.flop_weights
            total += n
            trainable += n_trainable
    return total, trainable


def train_flops(model: nn.Module, tokens: int) -> float:
    """Estimated FLOPs of training `model` on `tokens` tokens (padded or real)."""
    total, trainable = linear_weights(model)
    return float(tokens) * (4.0 * total + 2.0 * trainable)
