"""AutoLoRA's fine-grained gated fusion of several LoRAs' outputs at one linear layer
(lzws/AutoLoRA@cf7491f, train_merger.py LoraMergerNobase / LoraMergerNoCross, called
from diffsynth/vram_management/layers.py AutoLoRALinear).

For a layer with base output h = W0 x + b and LoRA outputs o_i = alpha_i B_i A_i x:
    g_i = sigmoid(LN_l(o_i) * w_lora [+ LN_b(h) * LN_l(o_i) * w_cross] + bias)
    y   = h + sum_i w_out * g_i * o_i
per feature and per token ('no_base' has the cross term, 'no_cross' does not). w_lora,
w_cross and bias start N(0, 1), w_out at w (0.512 in the authors' script), the two
LayerNorms (eps 1e-5) at identity; all of them are trained, the LoRAs and base frozen.

The gate depends on the input, so the fused model is not a weight update: the merge
(impl.py) returns layers (`FusedLinear` around each backbone linear, one `FusedLayer` of
frozen source LoRAs and trained gate per layer, shared by every task's model), and the
stage trains the gates (suite/posthoc/sources.py).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Kind = Literal["no_base", "no_cross"]


class GatedFusion(nn.Module):
    """The per-layer merger: (base output, stacked LoRA outputs) -> fused output."""

    def __init__(self, dim: int, kind: Kind = "no_base", w: float = 0.512):
        super().__init__()
        # the reference's creation order, so one seed gives the same N(0, 1) draws
        self.weight_lora = nn.Parameter(torch.randn(dim))
        self.weight_cross = nn.Parameter(torch.randn(dim)) if kind == "no_base" else None
        self.weight_out = nn.Parameter(torch.ones(dim) * w)
        self.bias = nn.Parameter(torch.randn(dim))
        self.norm_base = nn.LayerNorm(dim, eps=1e-5)
        self.norm_lora = nn.LayerNorm(dim, eps=1e-5)

    def gate(self, base: torch.Tensor, loras: torch.Tensor) -> torch.Tensor:
        normed = self.norm_lora(loras)
        logits = normed * self.weight_lora + self.bias
        if self.weight_cross is not None:
            logits = logits + self.norm_base(base) * normed * self.weight_cross
        return torch.sigmoid(logits)

    def forward(self, base: torch.Tensor, loras: torch.Tensor) -> torch.Tensor:
        """base: (..., dim); loras: (n, ..., dim), each LoRA's scaled output."""
        return base + (self.weight_out * self.gate(base, loras) * loras).sum(dim=0)


def lora_outputs(x: torch.Tensor, factors: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Stacked o_i = x A_i^T B_i^T (each B_i with its scale folded in, as TaskUpdate's)."""
    return torch.stack([x @ a.T @ b.T for b, a in factors])


class FusedLayer(nn.Module):
    """One layer's frozen source LoRAs (buffers) and its trained gate."""

    def __init__(self, factors: list[tuple[torch.Tensor, torch.Tensor]], fusion: GatedFusion):
        super().__init__()
        self.count = len(factors)
        for i, (b, a) in enumerate(factors):
            self.register_buffer(f"b{i}", b.detach().float().clone())
            self.register_buffer(f"a{i}", a.detach().float().clone())
        self.fusion = fusion

    def factors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(getattr(self, f"b{i}"), getattr(self, f"a{i}")) for i in range(self.count)]


class FusedLinear(nn.Module):
    """A frozen base linear whose output the layer's gate fuses with the LoRAs' (fp32)."""

    def __init__(self, base: nn.Linear, layer: FusedLayer):
        super().__init__()
        self.base = base
        self.layer = layer.to(base.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)
        loras = lora_outputs(x.float(), self.layer.factors())
        return self.layer.fusion(h.float(), loras).to(h.dtype)
