"""FRUGAL against its official code (philipzmr/FRUGAL@c7ebe4c frugal/; fixture in
tests/golden/frugal/): weights and moments after each of 7 steps, the chosen columns,
rows, entries, SVD projections or active blocks at each refresh (steps 0, 3, 6, moments
reset), the signSGD residual at inactive_lr_scale, a per-step lr, weight decay, and the
same random draws.

The svd case's projection is compared up to the sign of each singular vector (LAPACK
builds choose those differently), and its first moments with the same signs; its moments
are reset at every refresh, so the weights do not depend on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.plugins import load_object
from tests.golden.fixed_tensors import parameters, replay
from tests.support.golden import assert_close, load_fixture

FX = load_fixture("frugal")
CFG = FX.config
METHOD_DIR = Path(__file__).resolve().parents[1] / "methods" / "frugal"
PROJECTION = {"columns": "columns", "rows": "rows", "randk": "randk", "svd": "svd",
              "block_random": "block", "block_descending": "block"}  # fmt: skip


def native_class():
    return load_object("impl.py:FrugalAdamW", METHOD_DIR)


def run_native(case: str, optimizer_cls=None, **overrides):
    params = parameters(FX, CFG)
    options = {
        "frugal": True,
        "projection": PROJECTION[case],
        "density": CFG["density"],
        "update_gap": CFG["update_gap"],
        "proj_lr_scale": CFG["proj_lr_scale"],
        "inactive_lr_scale": CFG["inactive_lr_scale"],
        "inactive_update_rule": "sign_sgd",
        "reset_statistics": True,
        "block_order": CFG["cases"][case].get("block_order", "random"),
        **overrides,
    }
    groups = [
        {"params": [p for k, p in params.items() if k not in CFG["projected"]]},
        {"params": [params[k] for k in CFG["projected"]], **options},
    ]
    gen = torch.Generator().manual_seed(CFG["draw_seed"])
    cls = optimizer_cls or native_class()
    opt = cls(groups, lr=CFG["lrs"][0], weight_decay=CFG["weight_decay"], generator=gen)
    for t in replay(opt, params, FX, CFG):
        yield t, params, opt


def chosen(opt, p, shape) -> torch.Tensor:
    index = opt.subspaces[id(p)].index
    if index.ndim == 1 and index.numel() and opt.subspaces[id(p)].kind == "randk":
        return torch.stack([index // shape[1], index % shape[1]])
    return index


def projection_signs(opt, p, ref: torch.Tensor) -> torch.Tensor:
    """+-1 per singular vector of an svd subspace's P (rows of Vh or columns of U), shaped
    to multiply P; its transpose multiplies the projected moments."""
    space = opt.subspaces[id(p)]
    return torch.sign((space.index * ref).sum(1 if space.right else 0, keepdim=True))


@pytest.mark.parametrize("case", sorted(CFG["cases"]))
def test_golden_frugal_matches_the_official_code_step_by_step(case):
    for t, params, opt in run_native(case):
        for k, p in params.items():
            key, state = f"{case}.step{t}.{k}", opt.state[p]
            assert_close(p, FX[key], key)
            signs = None
            if f"{key}.chosen" in FX.tensors:
                picked, ref = chosen(opt, p, CFG["shapes"][k]).float(), FX[f"{key}.chosen"]
                if PROJECTION[case] == "svd":
                    signs = projection_signs(opt, p, ref)
                    picked = picked * signs
                assert_close(picked, ref.float(), f"{key}.chosen")
            has_moments = f"{key}.exp_avg" in FX.tensors
            assert ("exp_avg" in state) == has_moments, f"{key}: active set differs"
            if has_moments:
                m = state["exp_avg"] if signs is None else state["exp_avg"] * signs.T
                assert_close(m, FX[f"{key}.exp_avg"], f"{key}.exp_avg")
                assert_close(state["exp_avg_sq"], FX[f"{key}.exp_avg_sq"], f"{key}.exp_avg_sq")


def test_golden_frugal_resets_moments_at_each_refresh():
    """After the refresh at step 3 the moments restart: the step count is 1 again."""
    for t, params, opt in run_native("columns"):
        if t == CFG["update_gap"]:
            assert opt.state[params["w_a"]]["step"] == 1
            assert opt.state[params["reg_2d"]]["step"] == t + 1  # AdamW tensors never reset
            break


@pytest.mark.parametrize("rule", ["no", "sgd"])
def test_golden_frugal_fails_for_a_wrong_implementation(rule):
    """The fixture tells a wrong state-free rule apart (GaLore-like 'no', or plain SGD)."""
    last = None
    for t, params, _ in run_native("columns", inactive_update_rule=rule):
        last = (t, params["w_a"].detach().clone())
    t, w = last
    with pytest.raises(AssertionError):
        assert_close(w, FX[f"columns.step{t}.w_a"], "w_a")
