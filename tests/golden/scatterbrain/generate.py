"""Golden fixture for Scatterbrain's local + Performer attention, produced by the authors' code.

Repository: HazyResearch/fly, commit 6b73449a6b3e228af9e4afe4f153a384e9b537b9. Files run:
src/models/attention/sblocal_attention.py (SBLocalAttention.forward, non-causal),
feature_maps_sb.py (SBPerformerFeatures, softmax_kernel), projection_utils.py
(gaussian_orthogonal_random_matrix), scatterbrain_utils.py, src/models/modules/masking.py
(LengthMask). SBLocalAttention calls fast_transformers.local_product: that package's own
wrapper (fast_transformers/local_product/__init__.py of idiap/fast-transformers@2ad36b9)
is executed with its CPU kernel local_product_cpu.cpp compiled from source by
torch.utils.cpp_extension.load (the CUDA kernel's import fails and is skipped, as the
wrapper allows). einops (PyPI) is on the path from a scratch --target folder.

Command (from the peftbench repository root, with the project's venv; one thread):

    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/compress-ref/pkgs \
        python tests/golden/scatterbrain/generate.py \
        /tmp/compress-ref/fly /tmp/compress-ref/fast-transformers

Setting: B=2, T=20, H=2, head dim 8, key lengths [20, 13] (right padding, a LengthMask),
16 random features (a 8 x 8 projection), q, k, v from torch.manual_seed(0) (q and k
scaled by 1.5 so the softmax is peaked). Cases: windows 5 (odd), 6 (even) with eps 0
and 32 (wider than the sequence) with eps 1e-4. Before every forward
torch.manual_seed(SEED_PROJECTION): the module draws its projection on its first forward
from the global RNG; the drawn matrix is stored. Stored: inputs, per case the projection,
the output (B, T, H, D) and the attention matrix (need_weights=True, (B, H, T, S)).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FLY_COMMIT = "6b73449a6b3e228af9e4afe4f153a384e9b537b9"
FAST_TRANSFORMERS_COMMIT = "2ad36b97e64cb93862937bd21fcc9568d989561f"
B, T, H, E = 2, 20, 2, 8
LENGTHS = [20, 13]
FEATURES = 16
SEED_INPUTS, SEED_PROJECTION = 0, 1234
CASES = {"c5": (5, 0.0), "c6": (6, 0.0), "c32-eps": (32, 1e-4)}


def install_local_product(fast_transformers: Path) -> None:
    """fast_transformers.local_product as the package defines it, CPU kernel compiled."""
    from torch.utils.cpp_extension import load

    folder = fast_transformers / "fast_transformers" / "local_product"
    build = fast_transformers.parent / "build"
    build.mkdir(parents=True, exist_ok=True)
    kernel = load(
        name="local_product_cpu", sources=[str(folder / "local_product_cpu.cpp")],
        build_directory=str(build), verbose=False,
    )  # fmt: skip
    package = types.ModuleType("fast_transformers")
    package.__path__ = []
    sub = types.ModuleType("fast_transformers.local_product")
    sub.__path__ = [str(folder)]
    sys.modules["fast_transformers"] = package
    sys.modules["fast_transformers.local_product"] = sub
    sys.modules["fast_transformers.local_product.local_product_cpu"] = kernel
    spec = importlib.util.spec_from_file_location(
        "fast_transformers.local_product", folder / "__init__.py"
    )
    spec.loader.exec_module(sub)


def inputs() -> dict[str, torch.Tensor]:
    torch.manual_seed(SEED_INPUTS)
    q = 1.5 * torch.randn(B, T, H, E)
    k = 1.5 * torch.randn(B, T, H, E)
    v = torch.randn(B, T, H, E)
    return {"q": q, "k": k, "v": v}


def main(fly: Path, fast_transformers: Path) -> None:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    install_local_product(fast_transformers)
    sys.path.insert(0, str(fly))
    from src.models.attention.sblocal_attention import SBLocalAttention
    from src.models.modules.masking import LengthMask

    tensors = inputs()
    lengths = torch.tensor(LENGTHS, dtype=torch.long)
    for case, (context, eps) in CASES.items():
        module = SBLocalAttention(context, E, nb_features=FEATURES, softmax_eps=eps).eval()
        torch.manual_seed(SEED_PROJECTION)
        out, attn = module(
            tensors["q"], tensors["k"], tensors["v"],
            key_padding_mask=LengthMask(lengths, max_len=T), need_weights=True,
        )  # fmt: skip
        tensors[f"{case}/projection"] = module.feature_map.projection_matrix.clone()
        tensors[f"{case}/out"] = out.detach()
        tensors[f"{case}/attn"] = attn.detach()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "HazyResearch/fly",
        "commit": FLY_COMMIT,
        "files": [
            "src/models/attention/sblocal_attention.py",
            "src/models/attention/feature_maps_sb.py",
            "src/models/attention/projection_utils.py",
            "src/models/attention/scatterbrain_utils.py",
            "src/models/modules/masking.py",
            "idiap/fast-transformers@"
            + FAST_TRANSFORMERS_COMMIT
            + " fast_transformers/local_product/{__init__.py,local_product_cpu.cpp}",
        ],
        "command": "OMP_NUM_THREADS=1 PYTHONPATH=/tmp/compress-ref/pkgs python "
        "tests/golden/scatterbrain/generate.py /tmp/compress-ref/fly /tmp/compress-ref/fast-transformers",
        "config": {
            "shape_btHe": [B, T, H, E],
            "lengths": LENGTHS,
            "nb_features": FEATURES,
            "seed_inputs": SEED_INPUTS,
            "seed_projection": SEED_PROJECTION,
            "cases": {
                c: {"local_context": lc, "softmax_eps": eps} for c, (lc, eps) in CASES.items()
            },
            "threads": 1,
        },  # fmt: skip
        "notes": "q, k, v and out in the reference's (B, T, H, E) layout; attn (B, H, T, S)",
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
