"""Adds the reference's singular basis of W0 to the SALT fixture (`svd.U`, `svd.S`,
`svd.Vh`), derived from what the fixture already holds.

Why: SALT's layer is U ReLU(S') V^T with S' = diag(S) plus an off-diagonal X Y block, so
it is a different function for another choice of singular-vector signs (the ReLU is taken
elementwise over S', which a sign flip of a singular pair does not commute with). LAPACK
builds choose those signs differently (a CPU's MKL code path, the thread count), so a
test that recomputes the SVD reproduces the reference only where the SVD happens to come
out as it did on the machine that ran generate.py.

How: the reference's merged weight is W' = W0 + delta (delta is read from its forward
on the identity). With (U, S, Vh) any thin SVD of W0 and the singular values distinct
(checked), the reference's basis is (U D, S, D Vh) for a diagonal D of signs, and
U^T W' Vh^T = D ReLU(S') D. S' follows from S and the loaded trainable tensors, so each
d_i d_j is the sign of an entry of ReLU(S') that is not zero; the signs of the top r
pairs (a diagonal block) and one global sign of the trailing block leave W' and every
gradient unchanged and are set to +1. The derived basis is checked to reproduce out,
the gradients and delta at the golden tolerance before it is written.

Command (from the peftbench repository root; generate.py also runs it after writing):
    /work/main/.venv/bin/python tests/golden/salt/pin_svd.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
NAMES = ("trainable_scale_A", "trainable_shift_B", "trainable_X", "trainable_Y")


def _layer(t: dict, config: dict, svd=None):
    sys.path.insert(0, str(ROOT))
    from suite.plugins import load_object

    impl = ROOT / "methods" / "salt"
    salt_linear = load_object("impl.py:SALTLinear", impl)
    params = load_object("impl.py:SALTParams", impl)(ratio=config["ratio"], r_lora=config["r_lora"])
    base = torch.nn.Linear(config["d_in"], config["d_out"])
    with torch.no_grad():
        base.weight.copy_(t["W0"])
        base.bias.copy_(t["b0"])
    layer = salt_linear(base, params, torch.Generator().manual_seed(0), svd=svd)
    with torch.no_grad():
        for name in NAMES:
            getattr(layer, name).copy_(t[f"loaded.{name}"])
    return layer


def reference_signs(core: torch.Tensor, seen: torch.Tensor, rank: int) -> torch.Tensor:
    """D with D core D = seen, from the entries of `core` that are clearly not zero."""
    k = core.shape[0]
    signs = torch.zeros(k)
    signs[:rank] = 1.0
    clear = core.abs() > 1e-3 * core.abs().max()
    for start in range(rank, k):
        if signs[start] != 0:
            continue
        signs[start], todo = 1.0, [start]  # one sign per connected block is free
        while todo:
            i = todo.pop()
            for j in torch.nonzero(clear[i]).flatten().tolist():
                if signs[j] == 0:
                    signs[j] = signs[i] * torch.sign(seen[i, j] / core[i, j])
                    todo.append(j)
    return signs


def derive(t: dict, config: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(t["W0"].double(), full_matrices=False)
    gaps = (s[:-1] - s[1:]) / s[0]
    assert float(gaps.min()) > 1e-4, "tied singular values: signs do not pin the basis"
    layer = _layer(t, config)
    with torch.no_grad():
        core = torch.relu(layer.modified_spectrum()).double()
    seen = u.T @ (t["W0"] + t["delta"]).double() @ vh.T
    signs = reference_signs(core, seen, layer.rank).double()
    assert torch.allclose(signs[:, None] * core * signs[None, :], seen, atol=1e-4)
    return (u * signs).float(), s.float(), (signs[:, None] * vh).float()


def check(t: dict, config: dict, svd) -> None:
    from tests.support.golden import assert_close

    layer = _layer(t, config, svd=svd)
    out = layer(t["x"])
    assert_close(out, t["out"], "forward")
    out.backward(t["upstream"])
    for name in NAMES:
        assert_close(getattr(layer, name).grad, t[f"grad.{name}"], f"grad {name}")
    assert_close(layer.merged_weight() - t["W0"], t["delta"], "delta weight")


def main() -> None:
    path = HERE / "fixture.safetensors"
    t = {k: v for k, v in load_file(str(path)).items() if not k.startswith("svd.")}
    meta = json.loads((HERE / "fixture.json").read_text())
    u, s, vh = derive(t, meta["config"])
    check(t, meta["config"], (u, s, vh))
    save_file({**t, "svd.U": u.contiguous(), "svd.S": s, "svd.Vh": vh.contiguous()}, str(path))
    meta["svd"] = (
        "svd.U, svd.S, svd.Vh: the reference's thin SVD of W0, derived by pin_svd.py from "
        "W0 + delta = U ReLU(S') V^T (signs of the singular pairs; the rest of the basis "
        "is fixed by distinct singular values); the signs no stored output depends on are +1"
    )
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
