"""GaLore against its official package (galore-torch 1.0 AdamW and GaLoreProjector;
fixture in tests/golden/galore/): weights, moments and projections after each of 7
steps, with P recomputed at steps 0, 3 and 6 and the moments carried across, for both
projection sides, a per-step lr and weight decay.

The moments carry over a refresh of P, so the trajectory depends on the signs LAPACK
gives the singular vectors: the step-by-step checks replay the package's own P at each
refresh (stored in the fixture); our SVD path is checked separately, up to those signs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.plugins import load_object
from tests.golden.fixed_tensors import parameters, replay
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("galore")
CFG = FX.config


METHOD_DIR = Path(__file__).resolve().parents[1] / "methods" / "galore"


def native_class():
    return load_object("impl.py:GaLoreAdamW", METHOD_DIR)


def reference_projector(proj_type: str):
    """P as the package computed it at each refresh (steps 0, T, 2T, ...), per tensor."""
    refreshes = range(0, CFG["steps"], CFG["update_proj_gap"])
    queues = {
        tuple(CFG["shapes"][k]): [FX[f"{proj_type}.step{t}.{k}.projection"] for t in refreshes]
        for k in CFG["projected"]
    }

    def projector(grad, rank, side):
        assert rank == CFG["rank"]
        return queues[tuple(grad.shape)].pop(0).to(grad.dtype)

    return projector


def run_native(proj_type: str, optimizer_cls=None, own_svd: bool = False):
    optimizer_cls = optimizer_cls or native_class()
    params = parameters(FX, CFG)
    regular = [params[k] for k in CFG["shapes"] if k not in CFG["projected"]]
    groups = [
        {"params": regular},
        {"params": [params[k] for k in CFG["projected"]], "rank": CFG["rank"],
         "update_proj_gap": CFG["update_proj_gap"], "scale": CFG["scale"],
         "proj_type": proj_type},
    ]  # fmt: skip
    pinned = {} if own_svd else {"projector": reference_projector(proj_type)}
    opt = optimizer_cls(groups, lr=CFG["lrs"][0], weight_decay=CFG["weight_decay"], **pinned)
    for t in replay(opt, params, FX, CFG):
        yield t, params, opt


@pytest.mark.parametrize("proj_type", CFG["proj_types"])
def test_golden_galore_matches_the_package_step_by_step(proj_type):
    projections = []
    for t, params, opt in run_native(proj_type):
        for k, p in params.items():
            key = f"{proj_type}.step{t}.{k}"
            assert_close(p, FX[key], key)
            assert_close(opt.state[p]["exp_avg"], FX[f"{key}.exp_avg"], f"{key}.exp_avg")
            assert_close(opt.state[p]["exp_avg_sq"], FX[f"{key}.exp_avg_sq"], f"{key}.exp_avg_sq")
            if k in CFG["projected"]:
                assert_close(opt.state[p]["projection"], FX[f"{key}.projection"], f"{key}.P")
        projections.append(opt.state[params["w_tall"]]["projection"].clone())
    # P changes exactly at the refresh steps 0, 3, 6 (T = 3) and nowhere else.
    changed = [not torch.equal(a, b) for a, b in zip(projections, projections[1:], strict=False)]
    assert changed == [False, False, True, False, False, True]


@pytest.mark.parametrize("proj_type", CFG["proj_types"])
def test_golden_galore_own_svd_is_the_packages_up_to_signs(proj_type):
    """With P from our own SVD: each refresh's P is the package's up to each singular
    vector's sign, and until the second refresh (where the carried moments meet a P whose
    signs may differ) the weights are the package's."""
    for t, params, opt in run_native(proj_type, own_svd=True):
        for k in CFG["projected"]:
            key = f"{proj_type}.step{t}.{k}"
            if t % CFG["update_proj_gap"] == 0 and t <= CFG["update_proj_gap"]:
                mine, ref = opt.state[params[k]]["projection"], FX[f"{key}.projection"]
                along = 1 if mine.shape[0] == CFG["rank"] else 0  # rows of Vh, columns of U
                signs = torch.sign((mine * ref).sum(along, keepdim=True))
                assert_close(mine * signs, ref, f"{key}.P up to signs")
            if t < CFG["update_proj_gap"]:
                assert_close(params[k], FX[key], key)


def test_golden_galore_moments_are_not_reset_at_a_refresh():
    for t, params, opt in run_native("std"):
        if t == CFG["update_proj_gap"]:  # the step that recomputed P
            m = opt.state[params["w_tall"]]["exp_avg"]
            assert opt.state[params["w_tall"]]["step"] == t + 1
            # A reset moment would be (1 - beta1) R exactly: it is not.
            assert float(m.abs().max()) > 0
            assert_close(m, FX[f"std.step{t}.w_tall.exp_avg"], "exp_avg after refresh")
            break


def test_golden_galore_fails_for_a_wrong_implementation():
    """The fixture tells a wrong variant apart: moments reset whenever P is recomputed."""
    base = native_class()

    class ResetOnRefresh(base):
        def _project(self, p, grad, group):
            state = self.state[p]
            if "projection" in state and state["step"] % group["update_proj_gap"] == 0:
                state.pop("exp_avg", None)
                state.pop("exp_avg_sq", None)
            return super()._project(p, grad, group)

    final = {}
    for t, params, _ in run_native("std", ResetOnRefresh):
        final = {k: (t, p.detach().clone()) for k, p in params.items()}
    t, w = final["w_tall"]
    with pytest.raises(AssertionError):
        assert_close(w, FX[f"std.step{t}.w_tall"], "w_tall")


def test_golden_galore_defaults_are_the_package_defaults():
    opt = native_class()([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    assert opt.defaults["eps"] == FX.meta["defaults"]["eps"]
    assert list(opt.defaults["betas"]) == FX.meta["defaults"]["betas"]


def test_golden_galore_depends_on_the_projection_signs():
    """Why P is replayed: one singular vector's sign flipped at the second refresh (as
    another LAPACK may return it) changes the weights from that step on."""
    replayed, calls = reference_projector("std"), []

    def flipped(grad, rank, side):
        p = replayed(grad, rank, side).clone()
        calls.append(1)
        if len(calls) == 3:  # w_tall's P at step T
            p[0] = -p[0]
        return p

    base = native_class()

    class Flipped(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "projector": flipped})

    last = None
    for t, params, _ in run_native("std", Flipped):
        last = (t, params["w_tall"].detach().clone())
    with pytest.raises(AssertionError):
        assert_close(last[1], FX[f"std.step{last[0]}.w_tall"], "w_tall")
