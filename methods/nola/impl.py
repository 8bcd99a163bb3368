"""NOLA: LoRA whose factors are linear combinations of frozen random bases.

Follows UCDvision/NOLA gpt/src/model_nola.py (GenerateParams, NOLALinear, LoRA with
use_nola=True): A = A0 + sum_i alpha_i A_i, B = 0 + sum_j beta_j B_j, dW = (alpha/r) B A.
A0 is a frozen Kaiming-uniform matrix (the LoRA A init), each factor's bases are uniform
in [-1, 1) times 1/sqrt(#bases), drawn from that factor's own seed, and only the
coefficient vectors train (both start at 0). With `regenerate: true` the bases are
regenerated in forward and in backward, as GenerateParams does, so a layer holds only its
coefficients; by default they are kept as buffers (the same values), because drawing them
on a CPU costs ~8x the layer's step (see method.yaml).
"""

from __future__ import annotations

import itertools

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import FactoredLinear, TargetedParams, adapter_prepared, wrap_targets
from suite.methods.api import Method, Prepared
from suite.methods.lowrank_common import (
    RegeneratedMixture,
    kaiming_uniform_seeded,
    layer_seed,
    load_and_rebuild,
    state_with_buffers,
    uniform_bases,
)


class NOLAParams(TargetedParams):
    rank_fields = ("r",)
    r: PositiveInt = 8
    alpha: PositiveFloat = 8
    # gpt/scripts/finetune_gpt2m_e2e_qv_nola.sh (the script this method cites) uses 512;
    # gpt2_ft.py's argparse default is 1024.
    num_basis_A: PositiveInt = 512
    num_basis_B: PositiveInt = 512
    # True: regenerate the bases in forward and backward (the official GenerateParams;
    # memory = coefficients). False: keep them as buffers (same values, more memory,
    # much faster on CPU).
    regenerate: bool = False


class NOLALinear(FactoredLinear):
    """y = W0 x + s B A x with A, B mixtures of seeded random bases.

    `nola_seed` holds (seed of A's bases, seed of B's bases, seed of A0); `nola_cuda`
    says whether the bases come from a CUDA generator (the layer was built on a GPU, as
    the official code draws them on the coefficients' device) or a CPU one. These two
    buffers and the coefficients are all a saved adapter needs.
    """

    def __init__(self, base: nn.Linear, p: NOLAParams, seeds: tuple[int, int, int]):
        super().__init__(base)
        self.r, self.scaling, self.regenerate = p.r, p.alpha / p.r, p.regenerate
        self.dropout = nn.Identity()  # the official layer has none
        dtype, device = base.weight.dtype, base.weight.device
        self.register_buffer("nola_seed", torch.tensor(seeds, dtype=torch.int64, device=device))
        on_cuda = int(device.type == "cuda")
        self.register_buffer("nola_cuda", torch.tensor(on_cuda, dtype=torch.int64, device=device))
        self.coef_A = nn.Parameter(torch.zeros(p.num_basis_A, dtype=dtype, device=device))
        self.coef_B = nn.Parameter(torch.zeros(p.num_basis_B, dtype=dtype, device=device))
        self.rebuild()

    @torch.no_grad()
    def rebuild(self) -> None:
        """(Re)read the seeds; regenerate A0 (and the bases, when they are kept)."""
        self._seeds = tuple(int(s) for s in self.nola_seed.tolist())
        self._gen_device = "cuda" if int(self.nola_cuda) else "cpu"
        if self._gen_device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                "this NOLA adapter's bases were drawn by a CUDA generator; "
                "regenerating them needs a GPU"
            )
        like = {"dtype": self.coef_A.dtype, "device": self.coef_A.device}
        gen = torch.Generator().manual_seed(self._seeds[2])
        self.register_buffer(
            "lora_A0", kaiming_uniform_seeded(gen, (self.r, self.in_features)).to(**like), False
        )
        if not self.regenerate:
            bases_a, bases_b = self.bases()
            self.register_buffer("bases_A", bases_a.to(**like), persistent=False)
            self.register_buffer("bases_B", bases_b.to(**like), persistent=False)

    def bases(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A's bases (k_A x r x d_in) and B's (k_B x d_out x r), freshly generated (float32)."""
        seed_a, seed_b, _ = self._seeds
        shape_a, shape_b = (self.r, self.in_features), (self.out_features, self.r)
        return (
            uniform_bases(seed_a, self.coef_A.numel(), shape_a, self._gen_device),
            uniform_bases(seed_b, self.coef_B.numel(), shape_b, self._gen_device),
        )

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) = (A0 + sum alpha_i A_i, sum beta_j B_j)."""
        if self.regenerate:
            seed_a, seed_b, _ = self._seeds
            shape_a, shape_b = (self.r, self.in_features), (self.out_features, self.r)
            mix_a = RegeneratedMixture.apply(self.coef_A, seed_a, shape_a, self._gen_device)
            mix_b = RegeneratedMixture.apply(self.coef_B, seed_b, shape_b, self._gen_device)
        else:
            mix_a = torch.einsum("k,kri->ri", self.coef_A, self.bases_A)
            mix_b = torch.einsum("k,kor->or", self.coef_B, self.bases_B)
        return self.lora_A0 + mix_a, mix_b


class NOLA(Method):
    Params = NOLAParams

    def prepare(self, model, ctx) -> Prepared:
        patterns = ctx.preset.resolve_targets(self.params.targets)
        counter = itertools.count()

        def make(name, lin):
            index = next(counter)
            seeds = tuple(layer_seed(ctx.seed, 3 * index + j) for j in range(3))
            return NOLALinear(lin, self.params, seeds)

        wrap_targets(model, patterns, make)
        prepared = adapter_prepared(model)
        prepared.adapter_state = lambda: state_with_buffers(model, ("nola_seed", "nola_cuda"))
        prepared.load_adapter_state = lambda state: load_and_rebuild(model, state, NOLALinear)
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        # Independent of the layer shape: k_A + k_B coefficients per adapted matrix.
        return len(shapes) * (self.params.num_basis_A + self.params.num_basis_B)
