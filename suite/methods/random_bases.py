"""Frozen random bases shared by every adapted layer of a model (VeRA, RandLoRA, ...).

Methods such as VeRA and RandLoRA train only small vectors per layer and project through
random matrices that are the same for every layer: generated once from a seed, sized for
the largest target, and sliced per layer. Keeping one copy (rather than one per layer) is
what makes their memory footprint match the paper's, and regenerating them from the seed
is why the saved adapter holds only the trainable vectors.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SharedBases(nn.Module):
    """Named frozen tensors registered once and referenced by every adapted layer.

    The same instance is a child of every adapter layer (as PEFT's BufferDict is), so
    `model.to(device)` moves it and `named_buffers()` lists it once. The buffers are not
    persistent: they are regenerated from the seed, not saved.
    """

    def __init__(self, **tensors: torch.Tensor):
        super().__init__()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor, persistent=False)


def largest_shape(linears: list[nn.Linear]) -> tuple[int, int]:
    """(max d_out, max d_in) over the target layers, as PEFT's `_find_dim` computes it."""
    return (
        max(layer.out_features for layer in linears),
        max(layer.in_features for layer in linears),
    )


def kaiming_uniform_fan_in(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """U(-b, b) with b = sqrt(3) * sqrt(2) / sqrt(fan_in): PEFT VeRA's `_kaiming_init`.

    Drawn on the CPU from `generator`, so every layer and every run sees the same bases.
    """
    tensor = torch.empty(shape, device="cpu")
    fan_in = shape[1] * math.prod(shape[2:])
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(fan_in)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def kaiming_uniform_a5(
    shape: tuple[int, ...], generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    """`nn.init.kaiming_uniform_(a=sqrt 5)` on a CPU tensor of `dtype` (PEFT RandLoRA's)."""
    tensor = torch.empty(shape, dtype=dtype, device="cpu")
    with torch.no_grad():
        return nn.init.kaiming_uniform_(tensor, a=math.sqrt(5), generator=generator)
