"""Golden fixture for ICM-LoRA's CVAE, from the authors' code.

Repository: YihuaJerry/ICM-LoRA, commit 0b0057c (the public release of "In-Context Meta
LoRA Generation", IJCAI 2025). File used: model/CVAE_design.py (class CVAE, imported and
run unchanged; it imports torch only). Read, not run: TrainScript_CVAE.py (its
optimizer is never defined, so it cannot run), utils/normalizeLoraWeight_small.py and
utils/ReconstructLora_cvae.py (the data layout, checked by formula in the test).

Command (from the peftbench repository root, reference extracted to REF, e.g.
`git -C <mirror> archive HEAD model | tar -x -C /tmp/merge-ref/icm`):
    /work/main/.venv/bin/python tests/golden/icm-lora/generate.py REF

One thread (torch.set_num_threads(1)). The CVAE is built after torch.manual_seed(0)
(latent 16, condition 6, input length 5000, kernel 7, slice 4096: padded to 8192, two
positions after the encoder). Stored: the sum and the norm of every initial parameter
and buffer, and the small tensors whole; a batch of one LoRA vector x (1, 5000) with its
condition c; after torch.manual_seed(1), the training-mode forward's loss, reconstruction
loss and KL term, mu and log-variance, and the reconstruction of that same z; the sum
and norm of every gradient of loss.backward() (the small ones whole); then, in eval
mode, the decoding of a fixed z (2, 16) with conditions (2, 6).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
COMMIT = "0b0057c8c3fa5c38bc69b6687be3568aca48dd8c"  # the mirror's HEAD
CONFIG = {"latent": 16, "condition": 6, "length": 5000, "kernel": 7, "slice_length": 4096,
          "kld_weight": 0.005, "seed": 0, "forward_seed": 1, "threads": 1}  # fmt: skip
# Parameters small enough to store whole (the rest: sum and norm).
WHOLE = ("to_latent.weight", "fc_mu.weight", "fc_var.weight", "fc_mu.bias", "encoder.0.0.weight",
         "final_layer.3.weight", "final_layer.3.bias")  # fmt: skip


def summary(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in tensors.items():
        t = t.detach().double()
        out[f"{prefix}.sum.{name}"] = t.sum().reshape(1)
        out[f"{prefix}.norm.{name}"] = t.norm().reshape(1)
        if name in WHOLE:
            out[f"{prefix}.whole.{name}"] = t.float().clone()
    return out


def main(ref: str) -> None:
    sys.path.insert(0, ref)
    from model.CVAE_design import CVAE  # the authors' class, unchanged

    torch.set_num_threads(CONFIG["threads"])
    c = CONFIG
    torch.manual_seed(c["seed"])
    model = CVAE(latent_dim=c["latent"], condition_dim=c["condition"], input_length=c["length"],
                 kernel_size=c["kernel"], divide_slice_length=c["slice_length"],
                 kld_weight=c["kld_weight"])  # fmt: skip
    out = summary("init", dict(model.state_dict()))
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, c["length"], generator=gen)
    cond = torch.randn(1, c["condition"], generator=gen)
    z_eval = torch.randn(2, c["latent"], generator=gen)
    c_eval = torch.randn(2, c["condition"], generator=gen)
    out |= {"x": x, "c": cond, "z_eval": z_eval, "c_eval": c_eval}
    model.train()
    torch.manual_seed(c["forward_seed"])
    mu, log_var = model.encode(x[:, None, :], cond)
    out |= {"mu": mu.detach().clone(), "log_var": log_var.detach().clone()}
    torch.manual_seed(c["forward_seed"])
    loss, recons, kld = model(x[:, None, :], cond)  # the reference's (B, 1, L) input
    loss.backward()
    out |= {"loss": loss.detach().reshape(1), "recons": recons.detach().reshape(1),
            "kld": kld.detach().reshape(1)}  # fmt: skip
    out |= summary("grad", {k: p.grad for k, p in model.named_parameters()})
    model.eval()
    with torch.no_grad():
        out["decoded_eval"] = model.decode(z_eval, c_eval).clone()
    save_file({k: v.contiguous() for k, v in out.items()}, HERE / "fixture.safetensors")
    meta = {
        "repo": "YihuaJerry/ICM-LoRA", "commit": COMMIT, "files": ["model/CVAE_design.py"],
        "command": "/work/main/.venv/bin/python tests/golden/icm-lora/generate.py REF",
        "config": CONFIG,
        "notes": "the forward runs twice from the same seed: encode alone (mu, log-variance), "
                 "then the whole forward, whose reparameterisation draws the same noise; the "
                 "test replays both",
    }  # fmt: skip
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
