"""Golden fixture for SMoRA, from the authors' code.

Repository: StyxXuan/smora, commit 7e7ada17fda3bc1a82b80536617074a62d41f715 (the tip:
8bdabcd plus a readme typo fix; the srmole files are identical in both).
Files used: packages/peft/src/peft/tuners/srmole/layer.py (SRMoLELinear: router, sigmoid
gate + lora_biases, top-k, renormalisation x activate_r, scaling lora_alpha / activate_r,
the in-forward bias update at bias_update_rate = 1e-5), run on its own PEFT fork
(packages/peft/src, peft 0.12.1.dev0).

The layer is run on CPU with `dense_compute=True`, the reference's own einsum path; its
sparse path calls TVM CUDA kernels (idx_matmul_A/B.py) that compute the same product.
Two imports are stubbed in sys.modules because the checkout cannot satisfy them and the
dense path never uses them: `tvm` (imported by idx_matmul_A/B.py) and
`peft.tuners.srmole.topk` (imported by layer.py, absent from the repository). The gate
values are read by wrapping torch.einsum and keeping the operand of the reference's
'ijr,ir->ij' call (its gating_output); nothing in the computation changes.

Command (from this project's root, with the checkout at $SMORA):
    /work/main/.venv/bin/python tests/golden/smora/generate.py $SMORA
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import torch

D_IN, D_OUT, R, K, ALPHA = 24, 16, 8, 3, 16
BATCH, SEQ = 2, 4
TRAIN_FORWARDS = 3
SEED = 0


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def import_reference(checkout: Path):
    # Stubs for imports the dense path never uses (see the docstring).
    _stub(
        "tvm", te=_stub("tvm.te"), contrib=_stub("tvm.contrib", dlpack=_stub("tvm.contrib.dlpack"))
    )
    _stub("peft.tuners.srmole.topk", TopK_custom=None)
    sys.path.insert(0, str(checkout / "packages" / "peft" / "src"))
    import peft

    assert Path(peft.__file__).is_relative_to(checkout), peft.__file__
    from peft.tuners.srmole.layer import SRMoLELinear

    return SRMoLELinear


def build(SRMoLELinear, base: torch.nn.Linear):
    return SRMoLELinear(
        base, "default", r=R, activate_r=K, lora_alpha=ALPHA, lora_dropout=0.0, dense_compute=True
    )


def trained(layer) -> list[tuple[str, torch.Tensor]]:
    """The tensors the reference trains. PEFT's set_adapter leaves lora_biases with
    requires_grad=True (it is in adapter_layer_names, and its name carries the "lora_"
    prefix that _mark_only_adapters_as_trainable keeps), so the bias also receives
    gradients through the gate values, besides its in-forward sign update."""
    return [
        ("lora_A", layer.lora_A["default"].weight),
        ("lora_B", layer.lora_B["default"].weight),
        ("router", layer.lora_router["default"].weight),
        ("bias", layer.lora_biases["default"]),
    ]


def main(checkout: str, out_dir: str) -> None:
    SRMoLELinear = import_reference(Path(checkout).resolve())
    gen = torch.Generator().manual_seed(SEED)
    base = torch.nn.Linear(D_IN, D_OUT)
    with torch.no_grad():
        base.weight.copy_(torch.randn(D_OUT, D_IN, generator=gen) * 0.2)
        base.bias.copy_(torch.randn(D_OUT, generator=gen) * 0.1)

    # Initial tensors: the reference's own init under torch.manual_seed(SEED), built the
    # way its __init__ does (nn.Linear A, B, router; kaiming A; zero B; zero biases).
    torch.manual_seed(SEED)
    init = build(SRMoLELinear, torch.nn.Linear(D_IN, D_OUT))
    tensors = {
        "init.lora_A": init.lora_A["default"].weight.detach().clone(),
        "init.lora_B": init.lora_B["default"].weight.detach().clone(),
        "init.router": init.lora_router["default"].weight.detach().clone(),
        "init.bias": init.lora_biases["default"].detach().clone(),
    }

    layer = build(SRMoLELinear, base)
    lora_a = torch.randn(R, D_IN, generator=gen) * 0.3
    lora_b = torch.randn(D_OUT, R, generator=gen) * 0.3  # nonzero so the update is visible
    router = torch.randn(R, D_IN, generator=gen) * 0.5
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(lora_a)
        layer.lora_B["default"].weight.copy_(lora_b)
        layer.lora_router["default"].weight.copy_(router)
    tensors.update(
        {"base.weight": base.weight.detach().clone(), "base.bias": base.bias.detach().clone()}
    )
    tensors.update({"lora_A": lora_a, "lora_B": lora_b, "router": router})

    gates: list[torch.Tensor] = []
    einsum = torch.einsum

    def spy(equation, *operands):
        if equation == "ijr,ir->ij":
            gates.append(operands[1].detach().clone())
        return einsum(equation, *operands)

    torch.einsum = spy
    try:
        # Eval forward: gates and output with the bias at zero; then backward.
        x0 = torch.randn(BATCH, SEQ, D_IN, generator=gen)
        upstream = torch.randn(BATCH, SEQ, D_OUT, generator=gen)
        layer.eval()
        y = layer(x0)
        (y * upstream).sum().backward()
        tensors.update(
            {"x0": x0, "upstream": upstream, "eval.out": y.detach(), "eval.gates": gates[-1]}
        )
        for name, p in trained(layer):
            tensors[f"eval.grad.{name}"] = p.grad.detach().clone()
            p.grad = None

        # Training forwards on a fixed batch sequence: each one updates lora_biases.
        # Run at the default rate (1e-5) and at 0.05, where the bias visibly moves the
        # gate values and the selection.
        start = {n: p.detach().clone() for n, p in layer.named_parameters()}
        for prefix, rate in (("train", layer.bias_update_rate), ("fast", 0.05)):
            with torch.no_grad():
                for n, p in layer.named_parameters():
                    p.copy_(start[n])
            layer.bias_update_rate = rate
            layer.train()
            train_gen = torch.Generator().manual_seed(SEED + 1)
            for t in range(TRAIN_FORWARDS):
                x = torch.randn(BATCH, SEQ, D_IN, generator=train_gen)
                bias_before = layer.lora_biases["default"].detach().clone()
                y = layer(x)
                tensors[f"batch{t}"] = x  # the same batches for both rates
                tensors[f"{prefix}{t}.bias_before"] = bias_before
                tensors[f"{prefix}{t}.out"] = y.detach()
                tensors[f"{prefix}{t}.gates"] = gates[-1]
                tensors[f"{prefix}{t}.bias_after"] = layer.lora_biases["default"].detach().clone()
            # A last training forward + backward on x0, with the accumulated bias.
            y = layer(x0)
            (y * upstream).sum().backward()
            tensors[f"{prefix}_last.out"] = y.detach()
            tensors[f"{prefix}_last.gates"] = gates[-1]
            tensors[f"{prefix}_last.bias_after"] = layer.lora_biases["default"].detach().clone()
            for name, p in trained(layer):
                tensors[f"{prefix}_last.grad.{name}"] = p.grad.detach().clone()
                p.grad = None
        layer.bias_update_rate = 1e-5
    finally:
        torch.einsum = einsum

    assert all(p.requires_grad for _, p in trained(layer))
    trainable = sum(p.numel() for _, p in trained(layer))
    out = Path(out_dir)
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous().float() for k, v in tensors.items()}, str(out / "fixture.safetensors")
    )
    meta = {
        "repo": "StyxXuan/smora",
        "commit": "7e7ada17fda3bc1a82b80536617074a62d41f715",
        "files": [
            "packages/peft/src/peft/tuners/srmole/layer.py",
            "packages/peft/src/peft/tuners/srmole/config.py",
            "packages/peft/src/peft/tuners/srmole/model.py",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/smora/generate.py $SMORA",
        "config": {
            "d_in": D_IN,
            "d_out": D_OUT,
            "r": R,
            "activate_r": K,
            "lora_alpha": ALPHA,
            "lora_dropout": 0.0,
            "bias_update_rate": layer.bias_update_rate,
            "fast_bias_update_rate": 0.05,
            "scaling": layer.scaling["default"],
            "batch": BATCH,
            "seq": SEQ,
            "train_forwards": TRAIN_FORWARDS,
            "seed": SEED,
            "init_seed": "torch.manual_seed(0) before building the layer",
        },
        "trainable_params": trainable,
        "notes": (
            "dense_compute=True path on CPU; tvm and peft.tuners.srmole.topk stubbed in "
            "sys.modules (unused by that path). Gates captured from the einsum "
            "'ijr,ir->ij' operand. Every training forward updates lora_biases by "
            "1e-5 * sign(mean count - count) before the gates are used by the next one."
        ),
    }
    (out / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).parent))
