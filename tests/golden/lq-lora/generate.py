"""Golden fixture for LQ-LoRA, from the authors' code.

Repository: HanGuo97/lq-lora, commit c2424b3adc27197815da1ac9e1304565168d824d.
Files used: models/lq_utils.py (lowrank_quantized_sparse_decomposition: the alternating
SVD / quantisation loop, its stopping rule), models/factorizations_utils.py
(svd_decomposition, weighted_svd_decomposition with heuristic "two-sided"),
models/lora_utils.py
(transform_lora_layer_lpq: A = L2 / sqrt(s), B = L1 / sqrt(s); read, not run).

The reference's real quantiser (quantization_utils_2, the packed container) needs
NVIDIA's pytorch-quantization and its CUDA-oriented tensor containers, so the
decomposition is run with the project's quantiser substituted for
`maybe_sparsify_or_quantize`: torchao 0.18.0's NF4 round trip (block 64, scalers
double-quantised in blocks of 256), the same quantiser LQ-LoRA's Q uses here. The loop,
SVDs, weighting and stopping rule are the reference's. The module-level imports the loop
never uses (gurobipy, the ILP, misc_utils' inductor hack, the real quantiser) are
stubbed. The reference's fake "blockwise-nf" quantiser (quantization_utils.quantize)
quantises its scales through pytorch_quantization's fake_tensor_quant, so it was not
run either: the quantisers are compared only through QLoRA's NF4 (tests/test_storage.py
checks the torchao codes against bitsandbytes').

Command (from the peftbench repository root, reference checked out at REF):
    /work/main/.venv/bin/python tests/golden/lq-lora/generate.py REF

What it stores (CPU, float32 inputs): a 256 x 128 weight W (seeded normal, scaled 0.05),
a positive Fisher-like weight F; for rank 8: L1, L2, Q of the exact-SVD decomposition
(100 iterations max), of the randomised one (torch.manual_seed(0) before the call,
oversampling 10), and of the Fisher-weighted one (two-sided, exact SVD); the iterations
each ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent


def _stub_reference_imports() -> None:
    sys.modules["gurobipy"] = types.ModuleType("gurobipy")
    misc = types.ModuleType("models.misc_utils")
    misc.swarn = lambda *a, **k: None
    sys.modules["models.misc_utils"] = misc
    pq = types.ModuleType("pytorch_quantization")
    pq.tensor_quant = types.ModuleType("pytorch_quantization.tensor_quant")
    sys.modules["pytorch_quantization"] = pq
    sys.modules["pytorch_quantization.tensor_quant"] = pq.tensor_quant
    sys.modules["models.quantization_utils_2"] = types.ModuleType("models.quantization_utils_2")


def main(ref: str) -> None:
    sys.path.insert(0, ref)
    sys.path.insert(0, str(ROOT))
    _stub_reference_imports()
    from models import lq_utils  # the reference

    from suite.models.storage import CODECS

    codec = CODECS["nf4"]()
    counter = {"calls": 0}

    def nf4_round_trip(a, qconfig, fake=False):
        counter["calls"] += 1
        return codec.decode(*codec.encode(a), a.shape).float()

    lq_utils.maybe_sparsify_or_quantize = nf4_round_trip
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(256, 128, generator=gen) * 0.05
    fisher = torch.rand(256, 128, generator=gen) + 0.1
    out, meta = {"W": w, "F": fisher}, {}
    for case, kwargs in {
        "exact": dict(randomized=False),
        "randomized": dict(randomized=True, num_oversampling=10),
        "fisher": dict(randomized=False, W=fisher, heuristic="two-sided"),
    }.items():
        counter["calls"] = 0
        torch.manual_seed(0)
        l1, l2, q, _ = lq_utils.lowrank_quantized_sparse_decomposition(
            w.clone(), num_ranks=8, num_iterations=100, qconfig="nf4", **kwargs
        )
        out |= {f"{case}.L1": l1.contiguous(), f"{case}.L2": l2.contiguous(), f"{case}.Q": q}
        meta[f"{case}.iterations"] = counter["calls"]
    commit = subprocess.run(
        ["git", "-C", ref, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    save_file(out, HERE / "fixture.safetensors")
    (HERE / "fixture.json").write_text(
        json.dumps(
            {
                "repo": "HanGuo97/lq-lora",
                "commit": commit,
                "files": ["models/lq_utils.py", "models/factorizations_utils.py"],
                "command": "/work/main/.venv/bin/python tests/golden/lq-lora/generate.py REF",
                "config": {
                    "shape": [256, 128],
                    "rank": 8,
                    "iterations": 100,
                    "oversampling": 10,
                    "quantiser": "torchao 0.18.0 NF4 (64, 256)",
                },
                "results": meta,
                "notes": "maybe_sparsify_or_quantize replaced by the torchao NF4 round trip",
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main(sys.argv[1])
