"""CoSpaDi (reconstructed): the budget, Batch-OMP against a plain OMP, exactness at a
full budget, the calibration-weighted fit, and the compress stage on a toy model."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from suite.paths import SOURCE_ROOT
from suite.plugins import load_object
from suite.posthoc.calibrate import Calibration
from tests.helpers import catalog

FOLDER = SOURCE_ROOT / "posthoc" / "cospadi"
batch_omp, cospadi_factors, sizes = (
    load_object(f"dictionary.py:{name}", FOLDER) for name in ("batch_omp", "cospadi_factors", "sizes")
)  # fmt: skip


def test_the_budget_keeps_the_asked_share():
    # 0.7 x 384 x 384 = 103,219.2 values over 384 + 0.25 x 384 per atom: k 215, s 53
    assert sizes(384, 384, 0.3, 0.25) == (215, 53)
    k, s = sizes(384, 1536, 0.5, 0.25)
    assert 384 * k + 1536 * s <= 0.5 * 384 * 1536 < 384 * (k + 1) + 1536 * (k + 1) // 4


def _plain_omp(dictionary, signal, s):
    support, residual = [], signal.clone()
    for _ in range(s):
        scores = (dictionary.T @ residual).abs()
        scores[support] = -1
        support.append(int(scores.argmax()))
        sub = dictionary[:, support]
        coef = torch.linalg.lstsq(sub, signal[:, None]).solution[:, 0]
        residual = signal - sub @ coef
    out = torch.zeros(dictionary.shape[1], dtype=signal.dtype)
    out[support] = coef
    return out


def test_batch_omp_matches_a_plain_omp_column_by_column():
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(12, 20, generator=gen, dtype=torch.float64)
    d = d / d.norm(dim=0)
    signals = torch.randn(12, 7, generator=gen, dtype=torch.float64)
    codes = batch_omp(d, signals, 4, chunk=3)
    for i in range(7):
        torch.testing.assert_close(codes[:, i], _plain_omp(d, signals[:, i], 4))
    assert bool(((codes != 0).sum(dim=0) == 4).all())


def test_a_full_budget_rebuilds_the_weight():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(6, 8, generator=gen)
    x = torch.randn(50, 8, generator=gen)
    coefs, atoms = cospadi_factors(w, x.double().T @ x.double(), 8, 8, 2, 0.0, gen)
    torch.testing.assert_close(coefs @ atoms, w, atol=1e-4, rtol=1e-4)


def test_the_calibration_gram_lowers_the_output_error():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(24, 16, generator=gen)
    x = torch.randn(400, 16, generator=gen) * torch.logspace(1, -2, 16)
    aware = cospadi_factors(w, x.double().T @ x.double(), 6, 2, 3, 1e-6, gen)
    blind = cospadi_factors(w, torch.eye(16, dtype=torch.float64), 6, 2, 3, 1e-6, gen)

    def output_error(factors):
        coefs, atoms = factors
        return float((x @ (w - coefs @ atoms).T).norm())

    assert output_error(aware) < 0.5 * output_error(blind)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Module()
        self.backbone.layer = nn.ModuleList([nn.Linear(16, 24), nn.Linear(24, 16)])

    def forward(self, input_ids, attention_mask=None, **_):
        return self.backbone.layer[1](torch.relu(self.backbone.layer[0](input_ids)))


def test_the_stage_replaces_each_target_by_atoms_and_sparse_codes():
    model = _Toy()
    gen = torch.Generator().manual_seed(3)
    batches = [{"input_ids": torch.randn(4, 5, 16, generator=gen),
                "attention_mask": torch.ones(4, 5)} for _ in range(2)]  # fmt: skip
    named = [(f"layer.{n}", m) for n, m in model.backbone.layer.named_children()]
    ctx = SimpleNamespace(
        resolve=lambda t: named, seed=0, calibration=Calibration(batches, run=lambda b: model(**b))
    )
    entry = catalog().posthoc.get("cospadi")
    cls = load_object(entry.spec.implementation, entry.folder)
    result = cls(cls.Params(ratio=0.5, iterations=1)).compress(model, ctx)
    # 16 -> 24: k = floor(192 / (16 + 6)) = 8, s = 2; 24 -> 16: k = floor(192 / 28) = 6, s = 1
    assert (result.total, result.total - result.pruned) == (768, 16 * 8 + 24 * 2 + 24 * 6 + 16 * 1)
    params = dict(model.named_parameters())
    assert set(result.sparse) == {"backbone.layer.0.coefs.weight", "backbone.layer.1.coefs.weight"}
    assert bool(((params["backbone.layer.0.coefs.weight"] != 0).sum(dim=1) <= 2).all())
    assert torch.isfinite(model(**batches[0])).all()
