"""Per-equation tests for ALLoRA (docs/methods-new.md): what the conformance suite cannot
see, on fixed tensors whose expected values are derived by hand here, never by the
implementation's own formula."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from tests.support.methods import impl, make


def allora_layer(a: torch.Tensor, b: torch.Tensor, eta: float):
    mod = impl("allora")
    base = torch.nn.Linear(a.shape[1], b.shape[0], bias=False)
    layer = mod.ALLoRALinear(base, mod.ALLoRAParams(r=a.shape[0], eta=eta))
    with torch.no_grad():
        layer.lora_A.weight.copy_(a)
        layer.lora_B.weight.copy_(b)
    return layer


def grads(layer, x: torch.Tensor, delta: torch.Tensor):
    """(dL/dx, dL/dA, dL/dB) for L = <delta, update(x)>."""
    x = x.clone().requires_grad_(True)
    (layer.update(x) * delta).sum().backward()
    return x.grad, layer.lora_A.weight.grad, layer.lora_B.weight.grad


def test_allora_gradients_on_a_case_derived_by_hand():
    # A = [3 4], B = [1; 0]: BA = [[3, 4], [0, 0]], row norms 5 and 0; eta = 1 gives
    # s = (1/sqrt(5 + 1), 1/sqrt(0 + 1)). One token x = (1, 0), upstream delta = (1, 1):
    # g = delta^T x = [[1, 0], [1, 0]], g~ = diag(s) g = [[1/sqrt 6, 0], [1, 0]],
    # grad_B = g~ A^T = [3/sqrt 6; 3], grad_A = B^T g~ = [1/sqrt 6, 0], and the input's
    # gradient is plain: delta B A = (3, 4).
    layer = allora_layer(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0], [0.0]]), eta=1.0)
    gx, ga, gb = grads(layer, torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    assert torch.allclose(gb, torch.tensor([[3 / math.sqrt(6)], [3.0]]), atol=1e-6)
    assert torch.allclose(ga, torch.tensor([[1 / math.sqrt(6), 0.0]]), atol=1e-6)
    assert torch.allclose(gx, torch.tensor([[3.0, 4.0]]), atol=1e-6)


def test_allora_row_scaling_of_a_and_b_gradients_matches_the_paper_formula():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 7, generator=gen), torch.randn(5, 3, generator=gen)
    x, delta = torch.randn(2, 4, 7, generator=gen), torch.randn(2, 4, 5, generator=gen)
    eta = 1.5
    _, ga, gb = grads(allora_layer(a, b, eta), x, delta)
    # The paper's form: g = dL/d(BA) summed over tokens, rows scaled, chain rule.
    g = delta.reshape(-1, 5).T @ x.reshape(-1, 7)
    s = 1 / torch.sqrt(torch.linalg.norm(b @ a, dim=1) + 1 / eta**2)
    g_tilde = s[:, None] * g
    assert torch.allclose(gb, g_tilde @ a.T, atol=1e-5)
    assert torch.allclose(ga, b.T @ g_tilde, atol=1e-5)


def test_allora_input_gradient_and_output_equal_plain_unscaled_lora():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 7, generator=gen), torch.randn(5, 3, generator=gen)
    x, delta = torch.randn(4, 7, generator=gen), torch.randn(4, 5, generator=gen)
    layer = allora_layer(a, b, eta=2.0)
    gx, _, _ = grads(layer, x, delta)
    plain_x = x.clone().requires_grad_(True)
    plain = plain_x @ a.T @ b.T  # y = B A x, no alpha / r, no dropout
    (plain * delta).sum().backward()
    assert torch.allclose(gx, plain_x.grad, atol=1e-6)
    assert torch.allclose(layer.update(x), plain, atol=1e-6)
    assert torch.allclose(layer.delta_weight(), b @ a, atol=1e-6)


@pytest.mark.parametrize("eta", [1.0, 2.0])
def test_allora_eta_is_the_gain_at_a_zero_row(eta):
    # B = 0 (LoRA's init): every row norm is 0, so s = 1 / sqrt(1 / eta^2) = eta.
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(3, 7, generator=gen)
    x, delta = torch.randn(4, 7, generator=gen), torch.randn(4, 5, generator=gen)
    _, _, gb = grads(allora_layer(a, torch.zeros(5, 3), eta), x, delta)
    assert torch.allclose(gb, eta * (delta.T @ (x @ a.T)), atol=1e-5)


def test_allora_rejects_a_non_positive_eta():
    with pytest.raises(ValidationError, match="greater than 0"):
        make("allora", eta=0.0)


def test_allora_evaluates_as_plain_lora_without_autograd():
    gen = torch.Generator().manual_seed(4)
    a, b, x = torch.randn(3, 7, generator=gen), torch.randn(5, 3, generator=gen), torch.randn(4, 7)
    layer = allora_layer(a, b, eta=2.0)
    with torch.inference_mode():
        assert torch.allclose(layer.update(x), x @ a.T @ b.T, atol=1e-6)
