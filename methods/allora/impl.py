"""ALLoRA (Huang & Balestriero, arXiv 2410.09692): LoRA without dropout or alpha / r
scaling, whose backward scales each output row's gradient by an adaptive factor.

Forward: y = W0 x + B A x. With g = dL/d(BA) and row i of the product (BA)_i,

    g~_i = g_i / sqrt(||(BA)_i||_2 + 1 / eta^2)          (paper section 4.2)

the factor s_i computed in the forward from the current A, B and treated as a constant;
grad_B = g~ A^T and grad_A = B^T g~. Since g = delta^T x (delta: the upstream gradient of
the adapter's output), scaling g's rows is scaling delta's columns by s, so the backward
never forms g: grad_B = s * (delta^T h) with h = x A^T, grad_A = (delta diag(s) B)^T x.
The gradient passed to the layer's input is NOT scaled (the paper's "one more
implementation detail"): (delta B) A, as plain LoRA's. Hence a custom autograd function,
not a tensor hook. The row norms come from the r x r Gram matrix, ||(BA)_i||^2 =
b_i (A A^T) b_i^T, so no d_out x d_in product is formed.
"""

from __future__ import annotations

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import LinearAdapterMethod
from suite.methods.api import MethodParams
from suite.methods.lora_pair import LoRAPairLinear


class ALLoRAParams(MethodParams):
    rank_fields = ("r",)
    r: PositiveInt = 8
    # eta^2 in {1, 2, 4} in the paper; its listing hard-codes eta^2 = 4.
    eta: PositiveFloat = 2.0
    targets: str | list[str] = "qv"


@torch.no_grad()
def row_scale(a: torch.Tensor, b: torch.Tensor, eta: float) -> torch.Tensor:
    """s_i = 1 / sqrt(||(B A)_i||_2 + 1 / eta^2) for every output row i (d_out)."""
    squared = ((b @ (a @ a.T)) * b).sum(dim=1).clamp_min(0)
    return (squared.sqrt() + 1.0 / eta**2).rsqrt()


class ALLoRAFunction(torch.autograd.Function):
    """x A^T B^T forward; ALLoRA's row-scaled gradients for A and B, plain one for x."""

    @staticmethod
    def forward(ctx, x, a, b, eta):
        h = x @ a.T
        ctx.save_for_backward(x, a, b, h, row_scale(a, b, eta))
        return h @ b.T

    @staticmethod
    def backward(ctx, grad_out):
        x, a, b, h, s = ctx.saved_tensors
        delta = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_out @ b) @ a
        if ctx.needs_input_grad[1]:
            grad_a = (delta @ (s[:, None] * b)).T @ x.reshape(-1, x.shape[-1])
        if ctx.needs_input_grad[2]:
            grad_b = s[:, None] * (delta.T @ h.reshape(-1, h.shape[-1]))
        return grad_x, grad_a, grad_b, None


class ALLoRALinear(LoRAPairLinear):
    """y = W0 x + B A x (s = 1, no dropout), ALLoRA's gradient for A and B."""

    def __init__(self, base: nn.Linear, p: ALLoRAParams):
        super().__init__(base, p.r, scaling=1.0)
        self.eta = p.eta

    def update(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():  # evaluation: plain LoRA, no row norms to compute
            return self.lora_B(self.lora_A(x))
        return ALLoRAFunction.apply(x, self.lora_A.weight, self.lora_B.weight, self.eta)


class ALLoRA(LinearAdapterMethod):
    Params = ALLoRAParams
    layer = ALLoRALinear

    def expected_trainable_params(self, shapes) -> int:
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)
