"""Golden fixture for SNELL, produced by the authors' own code.

Repository: ssfgunner/SNELL, commit e9d51857fd36f8753096b05a907bd5223ff07d44.
File run: model/vision_transformer_timm.py, classes SNELL (init_thres > 0: the kernel
with competition-based sparsification) and KLoRA (init_thres = 0), lines 181-299.

Command (from the peftbench repository root):

    /work/main/.venv/bin/python tests/golden/snell/generate.py /path/to/ssfgunner-SNELL

Stubs: the module imports timm (constants, build_model_with_cfg, named_apply,
adapt_input_conv, PatchEmbed, DropPath, trunc_normal_, lecun_normal_, register_model)
for the ViT around the tuning modules; those names are stubbed in sys.modules (unused by
SNELL / KLoRA). The file is loaded by path, so model/__init__.py (Swin, ConvNeXt) is not
imported. The input x requires grad: the modules' forward is a re-entrant
torch.utils.checkpoint, which returns no parameter gradients otherwise.

Stored, for a 24 -> 16 layer with q = 8 (2 kernels of width 4): the init factors (for
distribution checks), and with fixed factors loaded, for sparsity 0.5 and 0 (KLoRA): the
kernel (pathIntegrals), the sparsified kernel (its nonzeros are the survivors), the
branch output for a fixed input, the factor gradients for a fixed upstream gradient,
the delta weight (the branch applied to the identity, transposed), and the count.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
COMMIT = "e9d51857fd36f8753096b05a907bd5223ff07d44"
CONFIG = {"d_in": 24, "d_out": 16, "q": 8, "kernels": 2, "sparsities": [0.5, 0.0], "seed": 0}


def _stub_timm() -> None:
    names = [
        "timm",
        "timm.data",
        "timm.models",
        "timm.models.helpers",
        "timm.models.layers",
        "timm.models.registry",
    ]
    mods = {n: types.ModuleType(n) for n in names}
    for c in (
        "IMAGENET_DEFAULT_MEAN",
        "IMAGENET_DEFAULT_STD",
        "IMAGENET_INCEPTION_MEAN",
        "IMAGENET_INCEPTION_STD",
    ):
        setattr(mods["timm.data"], c, (0.5, 0.5, 0.5))
    for f in ("build_model_with_cfg", "named_apply", "adapt_input_conv"):
        setattr(mods["timm.models.helpers"], f, None)
    for f in ("PatchEmbed", "DropPath", "trunc_normal_", "lecun_normal_"):
        setattr(mods["timm.models.layers"], f, None)
    mods["timm.models.registry"].register_model = lambda fn: fn
    sys.modules.update(mods)


def load(ref: Path):
    _stub_timm()
    path = ref / "model" / "vision_transformer_timm.py"
    spec = importlib.util.spec_from_file_location("snell_vit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(ref: Path) -> None:
    vit = load(ref)
    c = CONFIG
    out = {}
    torch.manual_seed(c["seed"])
    init = vit.SNELL(c["d_in"], c["d_out"], init_thres=0.5, q_dim=c["q"])
    out["init.In_Qs"] = init.In_Qs.detach().clone()
    out["init.Out_Qs"] = init.Out_Qs.detach().clone()
    gen = torch.Generator().manual_seed(1)
    in_qs = torch.randn(init.In_Qs.shape, generator=gen) * 0.5
    out_qs = torch.randn(init.Out_Qs.shape, generator=gen) * 0.5
    x = torch.randn(5, c["d_in"], generator=gen)
    upstream = torch.randn(5, c["d_out"], generator=gen)
    out.update({"loaded.In_Qs": in_qs, "loaded.Out_Qs": out_qs, "x": x, "upstream": upstream})
    counts = {}
    for sparsity in c["sparsities"]:
        tag = f"s{sparsity}"
        if sparsity > 0:
            layer = vit.SNELL(c["d_in"], c["d_out"], init_thres=sparsity, q_dim=c["q"])
        else:
            layer = vit.KLoRA(c["d_in"], c["d_out"], q_dim=c["q"])
        with torch.no_grad():
            layer.In_Qs.copy_(in_qs)
            layer.Out_Qs.copy_(out_qs)
        kernel = layer.pathIntegrals()
        out[f"{tag}.kernel"] = kernel.detach().clone()
        if sparsity > 0:
            out[f"{tag}.sparse_kernel"] = layer.sparsify(kernel).detach().clone()
        xg = x.clone().requires_grad_(True)
        y = layer(xg)
        (y * upstream).sum().backward()
        out[f"{tag}.update"] = y.detach().clone()
        out[f"{tag}.grad.In_Qs"] = layer.In_Qs.grad.clone()
        out[f"{tag}.grad.Out_Qs"] = layer.Out_Qs.grad.clone()
        with torch.no_grad():
            out[f"{tag}.delta_weight"] = layer(torch.eye(c["d_in"])).T.clone()
        counts[tag] = sum(p.numel() for p in layer.parameters() if p.requires_grad)

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "ssfgunner/SNELL",
        "commit": COMMIT,
        "files": ["model/vision_transformer_timm.py (KLoRA, SNELL; lines 181-299)"],
        "command": "/work/main/.venv/bin/python tests/golden/snell/generate.py <SNELL checkout>",
        "config": CONFIG,
        "trainable_params": counts,
        "notes": (
            "timm is stubbed (only the ViT around the modules uses it). SNELL.sparsify keeps "
            "K * threshold(|K|, quantile(|K|, init_thres), 0), |K| detached; KLoRA is the "
            "plain kernel. The branch is applied as F.linear(x, K.T); delta_weight = "
            "branch(identity).T (d_out x d_in)."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
