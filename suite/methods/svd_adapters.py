"""SVD-form adapters with importance scores, shared by AdaLoRA and IncreLoRA.

The update is dW = P diag(lambda) Q * alpha / (ranknum + 1e-5) (PEFT's `SVDLinear`):
Q (r x d_in) plays the right singular vectors, lambda (r) the singular values, P
(d_out x r) the left singular vectors. The factors are stored as lists of chunks so
IncreLoRA can append rank-1 triplets while training without rebuilding (and thereby
orphaning the optimiser state of) the existing ones; AdaLoRA keeps a single chunk.
The parameter names follow PEFT (`lora_A` = Q, `lora_E` = lambda, `lora_B` = P).
"""

from __future__ import annotations

import torch
from torch import nn

from suite.methods.adapters import AdapterLinear, load_state_strict

RANKNUM_EPS = 1e-5  # PEFT and the IncreLoRA code divide by ranknum + 1e-5


def to_steps(value: float, total: int) -> int:
    """A schedule length given in steps (>= 1) or as a fraction of the run (< 1)."""
    return int(value) if value >= 1 else int(round(value * total))


def _cat(chunks: nn.ParameterList, dim: int) -> torch.Tensor:
    return chunks[0] if len(chunks) == 1 else torch.cat(list(chunks), dim=dim)


class SVDLinear(AdapterLinear):
    """y = W0 x + P diag(lambda) Q dropout(x) * alpha / (ranknum + 1e-5).

    lambda starts at zero (identity at init), P and Q at N(0, 0.02), as in PEFT's
    `AdaLoraLayer.reset_lora_parameters`.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__(base)
        self.alpha = float(alpha)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ParameterList()
        self.lora_E = nn.ParameterList()
        self.lora_B = nn.ParameterList()
        # ranknum is deterministic state, not trained (PEFT keeps it requires_grad=False).
        self.register_buffer("ranknum", torch.tensor(float(r)))
        self.add_chunk(r, e_value=0.0)

    def add_chunk(self, r: int, e_value: float = 0.0, train_e: bool = True) -> list[nn.Parameter]:
        """Append r triplets (Q rows N(0, .02), lambda = e_value, P columns N(0, .02))."""
        w = self.base.weight
        a = nn.Parameter(torch.empty(r, self.in_features, dtype=w.dtype, device=w.device))
        b = nn.Parameter(torch.empty(self.out_features, r, dtype=w.dtype, device=w.device))
        e = nn.Parameter(torch.full((r, 1), e_value, dtype=w.dtype, device=w.device))
        nn.init.normal_(a, mean=0.0, std=0.02)
        nn.init.normal_(b, mean=0.0, std=0.02)
        e.requires_grad_(train_e)
        self.lora_A.append(a)
        self.lora_E.append(e)
        self.lora_B.append(b)
        return [a, e, b]

    @property
    def rank(self) -> int:
        return sum(e.shape[0] for e in self.lora_E)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q, lambda, P) with every chunk concatenated."""
        return _cat(self.lora_A, 0), _cat(self.lora_E, 0), _cat(self.lora_B, 1)

    def scale(self) -> torch.Tensor:
        return self.alpha / (self.ranknum + RANKNUM_EPS)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        a, e, b = self.factors()
        return (self.dropout(x) @ (a * e).T @ b.T) * self.scale()

    def delta_weight(self) -> torch.Tensor:
        a, e, b = self.factors()
        return (b @ (a * e)) * self.scale()


def orthogonality_penalty(modules: list[SVDLinear]) -> torch.Tensor:
    """Mean over P and Q matrices of ||Q Q^T - I||_F and ||P^T P - I||_F.

    PEFT's `AdaLoraModel.forward` averages over every lora_A and lora_B tensor; the
    IncreLoRA trainer does the same over each module's concatenated chunks. With one
    chunk per module the two coincide.
    """
    terms = []
    for m in modules:
        a, _, b = m.factors()
        for cov in (a @ a.T, b.T @ b):
            eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            terms.append(torch.linalg.matrix_norm(cov - eye, ord="fro"))
    return torch.stack(terms).mean()


class SensitivityEMA:
    """Smoothed sensitivity and its uncertainty (AdaLoRA eq. 4-6; PEFT `RankAllocator`).

    I_bar = b1 I_bar + (1 - b1) I;  U_bar = b2 U_bar + (1 - b2) |I - I_bar|;
    score = I_bar * U_bar. Works on tensors (AdaLoRA, per entry) and on floats
    (IncreLoRA, per module).
    """

    def __init__(self, beta1: float, beta2: float):
        self.beta1, self.beta2 = beta1, beta2
        self.ipt: dict = {}
        self.unc: dict = {}

    def update(self, key, value) -> None:
        prev_ipt = self.ipt.get(key, value * 0)
        prev_unc = self.unc.get(key, value * 0)
        ipt = self.beta1 * prev_ipt + (1 - self.beta1) * value
        self.ipt[key] = ipt
        self.unc[key] = self.beta2 * prev_unc + (1 - self.beta2) * abs(value - ipt)

    def score(self, key):
        return self.ipt[key] * self.unc[key]

    def reset(self) -> None:
        self.ipt.clear()
        self.unc.clear()


def svd_modules(model: nn.Module) -> list[tuple[str, SVDLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SVDLinear)]


def svd_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every chunk of every SVD adapter (trainable or not) plus ranknum, and the other
    trainable tensors (the head): enough to rebuild a model whose rank changed."""
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for name, m in svd_modules(model):
        state[f"{name}.ranknum"] = m.ranknum.detach().clone()
        for kind in ("lora_A", "lora_E", "lora_B"):
            for i, p in enumerate(getattr(m, kind)):
                state[f"{name}.{kind}.{i}"] = p.detach().clone()
    return state


def load_svd_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Grow each adapter to the chunk structure in `state`, then load it strictly."""
    for name, m in svd_modules(model):
        i = len(m.lora_E)
        while f"{name}.lora_E.{i}" in state:
            m.add_chunk(state[f"{name}.lora_E.{i}"].shape[0])
            i += 1
    load_state_strict(model, state)
