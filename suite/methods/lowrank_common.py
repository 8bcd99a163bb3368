"""Shared math for SVD/LU-initialised and random-basis low-rank adapters.

NOLA, LoRA-XS, LoRA-SB, LoLDU, SVFit and SALT all start from a decomposition of the
frozen weight (or of its gradient) or from random bases that must be regenerated
bit-for-bit from a stored seed; keeping that math here means every method computes it
the same way (float32, exact `torch.linalg` decompositions, an explicit generator that
never touches the global RNG).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from suite.methods.adapters import AdapterLinear, load_state_strict, trainable_state
from suite.methods.api import PrepareContext


def top_svd(weight: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U_r, S_r, Vh_r) of `weight` in float32, from the exact (deterministic) SVD.

    The official LoRA-XS/LoRA-SB code uses randomised truncated SVDs (sklearn's
    TruncatedSVD, torch.svd_lowrank); the exact SVD gives the same subspace up to signs
    without depending on a sampling seed.
    """
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    return u[:, :r].contiguous(), s[:r].contiguous(), vh[:r].contiguous()


def energy_rank(singular_values: torch.Tensor, energy: float, of: str = "sigma_squared") -> int:
    """The smallest r whose top-r singular values hold more than `energy` of the total.

    `of` is what is summed: "sigma_squared" (sum sigma_i^2, the squared Frobenius norm
    the best rank-r approximation keeps) or "sigma" (sum sigma_i, the nuclear norm).
    """
    s = singular_values.detach().double()
    weights = s.square() if of == "sigma_squared" else s
    total = float(weights.sum())
    if total == 0.0:
        return 1
    share = torch.cumsum(weights, 0) / total
    above = torch.nonzero(share > energy)
    return int(above[0]) + 1 if len(above) else int(s.numel())


def ldu(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """W = P L diag(D) U with partial pivoting; returns (perm, L, D, U).

    `perm` replaces the permutation matrix P: (P @ M) == M[perm], which saves a
    d_out x d_out buffer per layer. L is unit lower (d_out x k), U unit upper (k x d_in).
    """
    p, lower, upper = torch.linalg.lu(weight.detach().float())
    diag = torch.diagonal(upper).clone()
    upper = upper / diag.unsqueeze(-1)
    return p.argmax(dim=1), lower, diag, upper


def layer_seed(base_seed: int, index: int) -> int:
    """A distinct, reproducible seed per adapted layer (fits in int64, positive)."""
    return (int(base_seed) * 1_000_003 + 7919 * (index + 1)) % (2**31 - 1)


def seeded_uniform(
    generator: torch.Generator, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0
) -> torch.Tensor:
    """Uniform[low, high) float32 tensor drawn from `generator` (never the global RNG)."""
    return torch.empty(shape).uniform_(low, high, generator=generator)


def uniform_bases(
    seed: int, num_basis: int, shape: tuple[int, int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """`num_basis` float32 matrices of `shape`, uniform in [-1, 1) times 1/sqrt(num_basis).

    Drawn as NOLA's GenerateParams draws them (torch.manual_seed(seed), uniform_(-1, 1) on
    the coefficients' device, then times 1.0/sqrt(num_basis)), but from a generator of
    `device` seeded with `seed`, so the global RNG is untouched. On CPU this is the same
    stream, value for value; CPU and CUDA streams differ from each other.
    """
    gen = torch.Generator(device=device).manual_seed(int(seed))
    bases = torch.empty((num_basis, *shape), device=device).uniform_(-1.0, 1.0, generator=gen)
    return bases * (1.0 / math.sqrt(num_basis))


class RegeneratedMixture(torch.autograd.Function):
    """sum_k coef_k W_k with the bases W regenerated in forward and in backward.

    As NOLA's GenerateParams: nothing but the seed is kept between the passes, so the
    memory a layer holds is its coefficient vector (the bases exist only transiently).
    """

    @staticmethod
    def forward(ctx, coef, seed: int, shape: tuple[int, int], gen_device: str):
        ctx.seed, ctx.num_basis, ctx.shape, ctx.gen_device = seed, coef.numel(), shape, gen_device
        bases = uniform_bases(seed, coef.numel(), shape, gen_device)
        return torch.einsum("k,koi->oi", coef, bases.to(device=coef.device, dtype=coef.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        bases = uniform_bases(ctx.seed, ctx.num_basis, ctx.shape, ctx.gen_device)
        bases = bases.to(device=grad_out.device, dtype=grad_out.dtype)
        return torch.einsum("oi,koi->k", grad_out, bases), None, None, None


def kaiming_uniform_seeded(
    generator: torch.Generator, shape: tuple[int, int], a: float = math.sqrt(5)
) -> torch.Tensor:
    """nn.Linear's default init (kaiming_uniform_, a=sqrt 5) from an explicit generator."""
    out = torch.empty(shape)
    nn.init.kaiming_uniform_(out, a=a, generator=generator)
    return out


def take_samples(batches: Iterable[dict], n_samples: int) -> Iterable[dict]:
    """Yield batches, the last one cut, until exactly `n_samples` examples were given."""
    seen = 0
    for batch in batches:
        size = len(batch["input_ids"])
        take = min(size, n_samples - seen)
        if take <= 0:
            return
        yield {k: v[:take] if torch.is_tensor(v) else v for k, v in batch.items()}
        seen += take


def target_gradients(
    model: nn.Module, linears: list[nn.Linear], ctx: PrepareContext, n_samples: int
) -> list[torch.Tensor]:
    """Sum of the task-loss gradients of each frozen linear's weight over `n_samples`.

    The weights are made trainable only for these backward passes; every gradient the
    passes leave (on the head too) is cleared, so training starts from a clean state.
    """
    if ctx.train_batches is None or ctx.loss_fn is None:
        raise ValueError("this initialisation needs training batches and a loss function")
    was_training = model.training
    model.train()
    for lin in linears:
        lin.weight.requires_grad_(True)
    sums = [torch.zeros_like(lin.weight, dtype=torch.float32) for lin in linears]
    try:
        for batch in take_samples(ctx.train_batches(), n_samples):
            batch = {k: v.to(ctx.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            model.zero_grad(set_to_none=True)
            # The official code divides each batch loss by its size before summing.
            (ctx.loss_fn(model, batch) / len(batch["input_ids"])).backward()
            for total, lin in zip(sums, linears, strict=True):
                total += lin.weight.grad.float()
    finally:
        for lin in linears:
            lin.weight.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return sums


class FrozenFactorLinear(AdapterLinear):
    """y = W0 x + s B R A x with B (d_out x r), A (r x d_in) frozen and R (r x r) trainable.

    LoRA-XS fills B, A from W0's truncated SVD; LoRA-SB from the SVD of an approximate
    first update. B and A are buffers, recomputed at `prepare`, so the saved adapter is R.
    """

    def __init__(self, base: nn.Linear, b: torch.Tensor, r_mat: torch.Tensor, a: torch.Tensor):
        super().__init__(base)
        dtype, device = base.weight.dtype, base.weight.device
        self.scaling = 1.0
        self.register_buffer("lora_B", b.to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("lora_A", a.to(device=device, dtype=dtype), persistent=False)
        self.lora_R = nn.Parameter(r_mat.to(device=device, dtype=dtype))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.linear(x, self.lora_A)
        return (
            nn.functional.linear(nn.functional.linear(h, self.lora_R), self.lora_B) * self.scaling
        )

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_R @ self.lora_A) * self.scaling


def state_with_buffers(model: nn.Module, buffer_names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Trainable tensors plus the named buffers (e.g. seeds) a reload needs."""
    state = trainable_state(model)
    for name, buf in model.named_buffers():
        if name.rpartition(".")[2] in buffer_names:
            state[name] = buf.detach().clone()
    return state


def load_and_rebuild(model: nn.Module, state: dict[str, torch.Tensor], kind: type) -> None:
    """Load adapter tensors, then let every `kind` module rebuild what derives from them."""
    load_state_strict(model, state)
    for module in model.modules():
        if isinstance(module, kind):
            module.rebuild()
