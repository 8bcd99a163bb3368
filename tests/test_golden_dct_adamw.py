"""DCT-AdamW against its official package (ista-daslab-optimizers 1.1.15 DCTAdamW,
FFTLowRankProjector, dct3_matrix; fixture in tests/golden/dct-adamw/): the DCT basis, and
weights, moments and selected column / row indices after each of 6 steps, for a
selection refreshed every step (the default), every 3 steps, and with error feedback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.plugins import load_object
from tests.golden.fixed_tensors import parameters, replay
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("dct-adamw")
CFG = FX.config
METHOD_DIR = Path(__file__).resolve().parents[1] / "methods" / "dct-adamw"


def native(attr: str = "DCTAdamW"):
    return load_object(f"impl.py:{attr}", METHOD_DIR)


def run_native(case: str, optimizer_cls=None):
    opts = CFG["cases"][case]
    params = parameters(FX, CFG)
    groups = [
        {"params": [p for k, p in params.items() if k not in CFG["projected"]]},
        {"params": [params[k] for k in CFG["projected"]], "rank": CFG["rank"],
         "update_proj_gap": opts["update_proj_gap"]},
    ]  # fmt: skip
    cls = optimizer_cls or native()
    opt = cls(groups, lr=CFG["lrs"][0], weight_decay=CFG["weight_decay"],
              error_feedback=opts["use_ef"])  # fmt: skip
    for t in replay(opt, params, FX, CFG):
        yield t, params, opt


def test_golden_dct_adamw_basis_is_the_package_dct():
    q = native("dct3_matrix")(8, torch.float32, "cpu")
    assert torch.equal(q, FX["Q"])
    assert_close(q @ q.T, torch.eye(8), "Q orthonormal")


@pytest.mark.parametrize("case", sorted(CFG["cases"]))
def test_golden_dct_adamw_matches_the_package_step_by_step(case):
    for t, params, opt in run_native(case):
        for k, p in params.items():
            key = f"{case}.step{t}.{k}"
            state = opt.state[p]
            assert_close(p, FX[key], key)
            assert_close(state["m"], FX[f"{key}.m"], f"{key}.m")
            assert_close(state["v"], FX[f"{key}.v"], f"{key}.v")
            if k in CFG["projected"]:
                assert torch.equal(state["indices"], FX[f"{key}.indices"]), f"{key}.indices"
            if f"{key}.ef" in FX.tensors:
                assert_close(state["error"], FX[f"{key}.ef"], f"{key}.ef")


def test_golden_dct_adamw_selection_refreshes_only_on_schedule():
    """gap 3: the indices may change at steps 1, 3, 6 (1-based) and are frozen between."""
    seen = [FX[f"gap3.step{t}.w_tall.indices"] for t in range(CFG["steps"])]
    for t in (1, 3):  # 0-based steps 1, 3 and 4 keep the previous selection
        assert torch.equal(seen[t], seen[t - 1])
    assert torch.equal(seen[4], seen[3])


def test_golden_dct_adamw_fails_for_a_wrong_implementation():
    """The fixture tells a wrong variant apart: ranking columns by l2 instead of l1."""
    base = native()

    class L2(base):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.ell_norm = 2.0

    last = None
    for _, params, _ in run_native("gap1", L2):
        last = params["w_tall"].detach().clone()
    with pytest.raises(AssertionError):
        assert_close(last, FX[f"gap1.step{CFG['steps'] - 1}.w_tall"], "w_tall")
