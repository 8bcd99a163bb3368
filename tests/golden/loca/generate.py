"""Golden fixture for LoCA, from the official kernel as vendored by a third party.

The official repository, TL-UESTC/LoCA (a PEFT fork: peft/src/peft/tuners/loca/), is not
in the store. SDMuhsin/SCoRA vendors its kernel and states it is byte-identical:
src/loca_dct_utils.py (commit aebf63753ddb3cda4c856dfb40fdb371746e4957) is the authors'
dct_utils.py with a header prepended, and src/loca_adapter.py (commit
8c2460c0f97ede32063f8734ab840acb6d8469d7) holds the authors' IdctWithIndexGrad verbatim
and a LoCALinear that reproduces their spectrum_to_para, get_delta_weight and the
forward's alternating schedule (SCoRA's src/verify_loca_adapter.py checks both against a
clone of TL-UESTC/LoCA). The two files were copied from the store, unchanged in code,
into a scratch folder outside this project and run from there (the rest of
loca_adapter.py, its model wrapper and GLUE table, was left out of the copy).

Stored: the DCT matrices C_16 and C_24; on one 24 -> 16 layer with k = 10 and scale 2,
with fixed coefficients and locations (two locations on the same cell, one on each
border, one above the 0.999 clamp), the delta weight, the forward, and the gradients of
the coefficients and locations for a fixed upstream gradient (both trainable, and the
coefficients alone through the reference's plain iDCT path); the (coefficients,
locations) requires_grad states of the reference's schedule over 100 training forwards
with learn_location_iter 70; and the tensors after 40 AdamW steps (lr 5e-3 for the
coefficients, 1e-4 for the locations, no weight decay, constant) on a fixed sequence of
batches with learn_location_iter 35, starting from zero coefficients.

Command (from this project's root; $SCORA_SRC is the scratch folder with the two files):
    /work/main/.venv/bin/python tests/golden/loca/generate.py $SCORA_SRC
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

D_IN, D_OUT, K, SCALE = 24, 16, 10, 2.0
BATCH, SEQ = 2, 3
SCHEDULE_STEPS, SCHEDULE_LEARN = 100, 70
TRAIN_STEPS, TRAIN_LEARN, LR_COEF, LR_LOC = 40, 35, 5e-3, 1e-4


def fixed_locations(gen: torch.Generator) -> torch.Tensor:
    loc = torch.rand(2, K, generator=gen)
    loc[:, 1] = loc[:, 0]  # a duplicate cell: the coefficients sum
    loc[:, 2] = torch.tensor([0.0, 0.0])  # top-left border
    loc[:, 3] = torch.tensor([0.9995, 0.9995])  # clamped to 0.999: bottom-right border
    loc[:, 4] = torch.tensor([1.2, 0.5])  # above the clamp: no row gradient
    return loc


def layer_with(ref, base, spectrum, locations, learn_iter):
    layer = ref.LoCALinear(base, n_frequency=K, scale=SCALE, learn_location_iter=learn_iter)
    with torch.no_grad():
        layer.spectrum.copy_(spectrum)
        layer.spectrum_indices.copy_(locations)
    return layer


def gradients(ref, base, spectrum, locations, x, go, both: bool):
    layer = layer_with(ref, base, spectrum, locations, 1000)
    layer.eval()  # no schedule step: the requires_grad flags set here hold
    layer.spectrum_indices.requires_grad_(both)
    out = layer(x)
    (out * go).sum().backward()
    return out.detach(), layer.spectrum.grad, layer.spectrum_indices.grad


def schedule(ref, base) -> torch.Tensor:
    layer = layer_with(ref, base, torch.zeros(K), torch.rand(2, K), SCHEDULE_LEARN)
    layer.train()
    x = torch.randn(1, D_IN)
    states = []
    for _ in range(SCHEDULE_STEPS):
        layer(x)
        states.append([layer.spectrum.requires_grad, layer.spectrum_indices.requires_grad])
    return torch.tensor(states, dtype=torch.int64)


def train(ref, base, locations, xs, targets):
    layer = layer_with(ref, base, torch.zeros(K), locations, TRAIN_LEARN)
    layer.train()
    groups = [
        {"params": [layer.spectrum], "lr": LR_COEF},
        {"params": [layer.spectrum_indices], "lr": LR_LOC},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    for x, t in zip(xs, targets, strict=True):
        opt.zero_grad(set_to_none=True)
        (layer(x) * t).sum().backward()
        opt.step()
    return layer.spectrum.detach().clone(), layer.spectrum_indices.detach().clone()


def main(src: str, out_dir: str) -> None:
    sys.path.insert(0, src)
    import loca_adapter as ref
    from loca_dct_utils import DCT_CACHE

    gen = torch.Generator().manual_seed(0)
    base = torch.nn.Linear(D_IN, D_OUT, bias=True)
    with torch.no_grad():
        base.weight.copy_(torch.randn(D_OUT, D_IN, generator=gen) / D_IN**0.5)
        base.bias.copy_(torch.randn(D_OUT, generator=gen))
    spectrum = torch.randn(K, generator=gen)
    locations = fixed_locations(gen)
    x = torch.randn(BATCH, SEQ, D_IN, generator=gen)
    go = torch.randn(BATCH, SEQ, D_OUT, generator=gen)
    out, g_coef, g_loc = gradients(ref, base, spectrum, locations, x, go, both=True)
    _, g_coef_only, none = gradients(ref, base, spectrum, locations, x, go, both=False)
    assert none is None
    delta = layer_with(ref, base, spectrum, locations, 1000).get_delta_weight().detach()
    train_locations = torch.rand(2, K, generator=gen)
    xs = [torch.randn(BATCH, SEQ, D_IN, generator=gen) for _ in range(TRAIN_STEPS)]
    ts = [torch.randn(BATCH, SEQ, D_OUT, generator=gen) for _ in range(TRAIN_STEPS)]
    trained_coef, trained_loc = train(ref, base, train_locations, xs, ts)
    tensors = {
        "dct_16": DCT_CACHE._create_dct_matrix(D_OUT),
        "dct_24": DCT_CACHE._create_dct_matrix(D_IN),
        "base.weight": base.weight.detach(),
        "base.bias": base.bias.detach(),
        "spectrum": spectrum,
        "locations": locations,
        "x": x,
        "grad_out": go,
        "output": out,
        "delta_weight": delta,
        "grad_spectrum": g_coef,
        "grad_locations": g_loc,
        "grad_spectrum_coefficient_phase": g_coef_only,
        "schedule_states": schedule(ref, base),
        "train_locations_init": train_locations,
        "train_x": torch.stack(xs),
        "train_targets": torch.stack(ts),
        "trained_spectrum": trained_coef,
        "trained_locations": trained_loc,
    }
    from safetensors.torch import save_file

    out_path = Path(out_dir)
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(out_path / "fixture.safetensors")
    )
    meta = {
        "repo": "SDMuhsin/SCoRA (vendoring TL-UESTC/LoCA peft/src/peft/tuners/loca)",
        "commit": "8c2460c0f97ede32063f8734ab840acb6d8469d7 (src/loca_adapter.py), "
        "aebf63753ddb3cda4c856dfb40fdb371746e4957 (src/loca_dct_utils.py)",
        "files": ["src/loca_adapter.py", "src/loca_dct_utils.py"],
        "command": "/work/main/.venv/bin/python tests/golden/loca/generate.py $SCORA_SRC",
        "config": {
            "d_in": D_IN,
            "d_out": D_OUT,
            "n_frequency": K,
            "scale": SCALE,
            "batch": BATCH,
            "seq": SEQ,
            "dct_mode": "default",
            "schedule_steps": SCHEDULE_STEPS,
            "schedule_learn_location_iter": SCHEDULE_LEARN,
            "train_steps": TRAIN_STEPS,
            "train_learn_location_iter": TRAIN_LEARN,
            "lr_coefficients": LR_COEF,
            "lr_locations": LR_LOC,
            "seed": 0,
        },  # fmt: skip
        "trainable_coefficients": K,
        "optimised_locations": 2 * K,
        "notes": "Reference = the official kernel as vendored byte-identically by SCoRA "
        "(its own claim, checked there by gates G0/G1 against TL-UESTC/LoCA); the "
        "official repository itself was not reachable. Locations are given, not drawn: "
        "the reference's U[0,1] comes from the global RNG. Gradients with both tensors "
        "trainable use the reference's IdctWithIndexGrad; with the locations frozen, "
        "its plain iDCT (sparse_coo_tensor.to_dense) path. Training: plain AdamW, "
        "weight_decay 0, the schedule stepped by each training forward.",
    }
    (out_path / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], str(Path(__file__).resolve().parent))
