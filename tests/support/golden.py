"""Golden fixtures: numbers a method's own reference code produced, stored under
`tests/golden/<method>/`.

Each fixture folder holds:

- `generate.py`: the script that produced it. It runs the reference code (a checkout of
  the authors' repository, or an official package) from a scratch folder outside this
  project, on fixed weights, inputs and seeds. Its docstring names the repository, the
  commit, the files it uses and the exact command. The reference code is run, never
  copied into this project.
- `fixture.safetensors`: the tensors (inputs, weights loaded into both implementations,
  outputs, gradients, delta weights, states after a few steps).
- `fixture.json`: the metadata: `repo`, `commit`, `files`, `command`, `config` (shapes,
  hyperparameters, seeds) and free-form `notes`; plus any scalar results (counts).

Tests named `test_golden_*` load a fixture, rebuild the same setting with peftbench's
implementation, and compare at `TOL` (fp32) unless they say why not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
TOL = 1e-5
REQUIRED_META = ("repo", "commit", "files", "command", "config")


@dataclass(frozen=True)
class Fixture:
    name: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]


def load_fixture(name: str, file: str = "fixture") -> Fixture:
    """The fixture `tests/golden/<name>/<file>.{safetensors,json}`, with its provenance checked."""
    from safetensors.torch import load_file

    folder = GOLDEN_DIR / name
    meta = json.loads((folder / f"{file}.json").read_text())
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"golden fixture {name}/{file}.json lacks {missing}")
    if not (folder / "generate.py").is_file():
        raise ValueError(f"golden fixture {name} has no generate.py beside it")
    tensors_path = folder / f"{file}.safetensors"
    tensors = load_file(str(tensors_path)) if tensors_path.exists() else {}
    return Fixture(name, tensors, meta)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, tol: float = TOL) -> None:
    """Max absolute difference within `tol` (relative to the reference's scale when large)."""
    actual = actual.detach().float().cpu()
    expected = expected.detach().float().cpu()
    assert actual.shape == expected.shape, (
        f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    )
    scale = max(1.0, float(expected.abs().max()))
    diff = float((actual - expected).abs().max())
    assert diff <= tol * scale, f"{what}: max |diff| {diff:.3e} > {tol:.0e} x {scale:.3g}"


def tie_groups(s: torch.Tensor, rel: float = 1e-4) -> list[list[int]]:
    """Indices of singular values grouped where neighbours are within `rel` x S_max."""
    groups, gap = [[0]], rel * float(s.abs().max())
    for i in range(1, len(s)):
        if float(s[i - 1] - s[i]) <= gap:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def assert_same_svd(ours, ref, what: str, tol: float = TOL, ties: float = 1e-4) -> None:
    """Two thin SVDs (U, S, V^T) of one matrix agree up to what an SVD leaves free: the
    sign of each singular pair, and a rotation within each group of tied singular values.

    Compared: S, and per group the projectors U_g U_g^T, V_g V_g^T and U_g S_g V_g^T
    (each unchanged by those freedoms)."""
    (u, s, vh), (ru, rs, rvh) = ([t.detach().double() for t in x] for x in (ours, ref))
    assert_close(s, rs, f"{what}: singular values", tol)
    for g in tie_groups(rs, ties):
        for mine, theirs, name in (
            (u[:, g] @ u[:, g].T, ru[:, g] @ ru[:, g].T, "U U^T"),
            (vh[g].T @ vh[g], rvh[g].T @ rvh[g], "V V^T"),
            (u[:, g] * s[g] @ vh[g], ru[:, g] * rs[g] @ rvh[g], "U S V^T"),
        ):
            assert_close(mine, theirs, f"{what}: {name} of singular values {g}", tol)


def pair_signs(u: torch.Tensor, ref_u: torch.Tensor) -> torch.Tensor:
    """+-1 per column: the sign that turns each of `u`'s singular vectors into `ref_u`'s."""
    return torch.sign((u.detach() * ref_u.detach()).sum(0))


class ChainToy(nn.Module):
    """The sparse fine-tuning fixtures' model (LT-SFT, SpIEL): head(c(tanh(b(tanh(a(x)))))),
    each linear shaped by `shapes[name]` = (d_out, d_in)."""

    TARGETS = ("a", "b", "c")

    def __init__(self, shapes: dict[str, list[int]]):
        super().__init__()
        self.backbone = nn.Module()
        for name in self.TARGETS:
            d_out, d_in = shapes[name]
            setattr(self.backbone, name, nn.Linear(d_in, d_out))
        self.head = nn.Linear(*reversed(shapes["head"]))

    def forward(self, x):
        b = self.backbone
        return self.head(b.c(torch.tanh(b.b(torch.tanh(b.a(x))))))


class OneLinearToy(nn.Module):
    """A backbone of one target linear `a` (d_in -> d_out) and a 3-class head (the SNELL
    and SoRA fixtures' model)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.a = nn.Linear(d_in, d_out)
        self.head = nn.Linear(d_out, 3)

    def forward(self, x):
        return self.head(self.backbone.a(x))


def frozen_toy(model: nn.Module, fx: Fixture | None = None) -> nn.Module:
    """`model` (with the fixture's `model.*` weights, if given) with its backbone frozen:
    the task model a method prepares."""
    if fx is not None:
        prefix = "model."
        model.load_state_dict(
            {k.removeprefix(prefix): v for k, v in fx.tensors.items() if k.startswith(prefix)}
        )
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return model
