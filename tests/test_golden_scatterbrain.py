"""Scatterbrain's local + Performer attention against HazyResearch/fly@6b73449's own
SBLocalAttention with fast_transformers' compiled local kernel
(tests/golden/scatterbrain/generate.py): the projection drawn under a seed, the output,
and the attention matrix (the output for V = I), on right-padded sequences at three
windows."""

from __future__ import annotations

import pytest
import torch

from suite.paths import SOURCE_ROOT
from suite.plugins import load_object
from tests.support.golden import assert_close, load_fixture

FOLDER = SOURCE_ROOT / "posthoc" / "scatterbrain"
orthogonal_gaussian, sblocal_attention = (
    load_object(f"attention.py:{name}", FOLDER) for name in ("orthogonal_gaussian", "sblocal_attention")
)  # fmt: skip

FIX = load_fixture("scatterbrain")
CFG = FIX.config
CASES = list(CFG["cases"])


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2)  # (B, T, H, E) -> (B, H, T, E)


def _keep() -> torch.Tensor:
    T = CFG["shape_btHe"][1]
    return torch.arange(T)[None, :] < torch.tensor(CFG["lengths"])[:, None]


def _run(case: str, v: torch.Tensor) -> torch.Tensor:
    settings = CFG["cases"][case]
    q, k = _heads_first(FIX["q"]), _heads_first(FIX["k"])
    E = q.shape[-1]
    return sblocal_attention(
        q, k, v, _keep(), FIX[f"{case}/projection"], settings["local_context"], E**-0.5,
        settings["softmax_eps"],
    )  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_golden_scatterbrain_projection_draw(case):
    """Same seed, same Haar blocks and norms as the reference's global-RNG draw."""
    rows, cols = CFG["nb_features"] // 2, CFG["shape_btHe"][3]
    drawn = orthogonal_gaussian(rows, cols, torch.Generator().manual_seed(CFG["seed_projection"]))
    assert_close(drawn, FIX[f"{case}/projection"], f"{case} projection")


@pytest.mark.parametrize("case", CASES)
def test_golden_scatterbrain_output(case):
    out = _run(case, _heads_first(FIX["v"]))
    assert_close(out.transpose(1, 2), FIX[f"{case}/out"], f"{case} output")


@pytest.mark.parametrize("case", CASES)
def test_golden_scatterbrain_attention_matrix(case):
    """The output for V = I is the approximate attention matrix itself; padded queries'
    rows are compared too (the reference computes them the same way)."""
    B, T, H, _ = CFG["shape_btHe"]
    eye = torch.eye(T).expand(B, H, T, T)
    assert_close(_run(case, eye), FIX[f"{case}/attn"], f"{case} attention")
