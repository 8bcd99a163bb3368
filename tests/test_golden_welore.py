"""WeLore's rank rule against VITA-Group/WeLore@3f3dac6's own code
(tests/golden/welore/generate.py): the pruned rank of every matrix, which matrices
become low-rank at each min_ratio, and the low-rank weights U V."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from suite.paths import SOURCE_ROOT
from suite.plugins import load_object
from tests.support.golden import assert_close, load_fixture

# The rank rule lives in WeLore's own folder (posthoc/welore/lowrank.py).
LowRankLinear, apply_plan, threshold_for, welore_plan, pruned_rank, singular_values = (
    load_object(f"lowrank.py:{name}", SOURCE_ROOT / "posthoc" / "welore")
    for name in ("LowRankLinear", "apply_plan", "threshold_for", "welore_plan", "pruned_rank",
                 "singular_values")
)  # fmt: skip

FIX = load_fixture("welore")
CFG = FIX.config


def toy() -> nn.Module:
    root = nn.Module()
    for key in (k.removeprefix("weight/") for k in FIX.tensors if k.startswith("weight/")):
        layer, name = key.split(".", 1)
        m, n = CFG["shapes"][name]
        lin = nn.Linear(n, m, bias=False)
        with torch.no_grad():
            lin.weight.copy_(FIX[f"weight/{key}"])
        holder = root
        for part in (f"l{layer}", *name.split(".")[:-1]):
            if not hasattr(holder, part):
                holder.add_module(part, nn.Module())
            holder = getattr(holder, part)
        holder.add_module(name.split(".")[-1], lin)
    return root


def _named(root: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, m.weight) for n, m in root.named_modules() if isinstance(m, nn.Linear)]


def _key(name: str) -> str:
    return name.removeprefix("l")


@pytest.mark.parametrize("case", list(CFG["cases"]))
def test_golden_welore_ranks_and_low_rank_set(case):
    expected = FIX.meta["results"][case]
    plan = welore_plan(_named(toy()), expected["tau"], expected["min_ratio"])
    assert {_key(d.name): d.pruned for d in plan} == expected["pruned_rank"]
    assert sorted(_key(d.name) for d in plan if d.low_rank) == sorted(expected["low_rank"])


def test_golden_welore_low_rank_weights():
    """U V of every low-rank matrix, within the reference's bf16 storage of U and V."""
    expected = FIX.meta["results"]["t0.135-r0"]
    root = toy()
    plan = welore_plan(_named(root), expected["tau"], expected["min_ratio"])
    apply_plan(root, plan)
    for decision in plan:
        layer = root.get_submodule(decision.name)
        assert isinstance(layer, LowRankLinear) and layer.rank == decision.kept
        product = layer.U.weight @ layer.V.weight
        ref = FIX[f"t0.135-r0/{_key(decision.name)}/UV"]
        assert_close(product, ref, decision.name, tol=2**-7)


def test_threshold_search_reaches_the_target_reduction():
    """For models without the reference's tau table: the smallest tau whose pruned share
    of the total rank reaches the target (here checked against a brute-force count)."""
    weights = _named(toy())
    spectra = [singular_values(w) for _, w in weights]
    total = sum(len(s) for s in spectra)
    for target in (0.1, 0.5, 0.7):
        tau = threshold_for(spectra, target)
        pruned = sum(pruned_rank(s, tau) for s in spectra)
        assert pruned >= target * total
        below = torch.nextafter(torch.tensor(tau), torch.tensor(0.0)).item()
        assert sum(pruned_rank(s, below) for s in spectra) < target * total or below <= 0
