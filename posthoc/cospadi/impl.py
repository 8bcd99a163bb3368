"""CoSpaDi: each target weight becomes a dense dictionary times column-sparse codes,
fitted to the layer's outputs on the calibration set (the maths: dictionary.py)."""

from __future__ import annotations

import torch
from pydantic import Field, NonNegativeInt
from torch import nn

from suite.methods.targets import replace_module
from suite.plugins import sibling_names
from suite.posthoc.api import Compressed, CompressMethod, PosthocParams
from suite.posthoc.calibrate import each_sequence_input

# This method's own maths, in this folder (dictionary.py).
cospadi_factors, sizes = sibling_names(__file__, "dictionary.py", "cospadi_factors", "sizes")


class CoSpaDiParams(PosthocParams):
    # Share of the targets' values removed (the paper reports 20-50%).
    ratio: float = Field(default=0.3, gt=0.0, lt=1.0)
    # s / k: nonzeros per column over atoms (this project's choice).
    coef_share: float = Field(default=0.25, gt=0.0, le=1.0)
    iterations: NonNegativeInt = 5
    damp: float = Field(default=0.01, ge=0.0)
    targets: str | list[str] = "all-linear"


class DictionaryLinear(nn.Module):
    """y = coefs (atoms x) + b: atoms (k x d_in) dense, coefs (d_out x k) with s nonzeros
    in every row."""

    def __init__(self, base: nn.Linear, coefs: torch.Tensor, atoms: torch.Tensor):
        super().__init__()
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.in_features, self.out_features = base.in_features, base.out_features
        self.atoms = nn.Linear(base.in_features, atoms.shape[0], bias=False, **like)
        self.coefs = nn.Linear(
            atoms.shape[0], base.out_features, bias=base.bias is not None, **like
        )
        with torch.no_grad():
            self.atoms.weight.copy_(atoms)
            self.coefs.weight.copy_(coefs)
            if base.bias is not None:
                self.coefs.bias.copy_(base.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coefs(self.atoms(x))


def input_grams(targets: list[tuple[str, nn.Linear]], calibration) -> dict[str, torch.Tensor]:
    """X^T X of every target's inputs over the calibration set's real tokens (fp64)."""
    grams = {n: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for n, m in targets}

    def add(name: str, x: torch.Tensor) -> None:
        x = x.double().cpu()
        grams[name] += x.T @ x

    each_sequence_input(targets, calibration, add)
    return grams


class CoSpaDi(CompressMethod):
    Params = CoSpaDiParams

    def compress(self, model, ctx) -> Compressed:
        p = self.params
        if ctx.calibration is None:
            raise ValueError("cospadi fits each layer's outputs on a calibration set")
        targets = ctx.resolve(p.targets)
        grams = input_grams(targets, ctx.calibration)
        gen = torch.Generator().manual_seed(ctx.seed)
        total = kept = 0
        sparse: dict[str, tuple[int, int] | None] = {}
        for name, module in targets:
            k, s = sizes(module.in_features, module.out_features, p.ratio, p.coef_share)
            coefs, atoms = cospadi_factors(
                module.weight, grams[name], k, s, p.iterations, p.damp, gen
            )
            replace_module(model.backbone, name, DictionaryLinear(module, coefs, atoms))
            sparse[f"backbone.{name}.coefs.weight"] = None
            total += module.weight.numel()
            kept += k * module.in_features + s * module.out_features
        return Compressed(
            pruned=total - kept,
            total=total,
            level=p.ratio,
            level_label=f"{p.ratio:.0%} of values",
            sparse=sparse,
            notes=f"{len(targets)} matrices as dictionaries; {p.iterations} K-SVD iterations",
        )
