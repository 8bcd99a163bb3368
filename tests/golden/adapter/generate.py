"""Golden fixture for the bottleneck adapter, produced by adapter-hub/adapters' own module.

Repository: adapter-hub/adapters, commit 88f18ebd6c127f0e0ddf7c76cb84b37a39b82c12.
Files run: src/adapters/methods/modeling.py (class Adapter: __init__ with init_weights
"bert" / "mam_adapter", pre_forward, forward, post_forward) and
src/adapters/configuration/adapter_config.py (DoubleSeqBnConfig = Houlsby, SeqBnConfig =
Pfeiffer). The PyPI package (adapters 1.3.0) needs transformers ~= 4.57.6, not this
project's 5.x, so the checkout's modules are loaded by path: the package __init__ files
are skipped and adapters.utils is stubbed (it imports a huggingface_hub name this venv
lacks; nothing stubbed is used by the Adapter module).

Command (from the peftbench repository root):

    /work/main/.venv/bin/python tests/golden/adapter/generate.py /path/to/adapters-checkout

The adapter path is the one the library's BERT integration takes for a single active
adapter (models/bert/modeling_bert.py: BertSelfOutput / BertOutput call
bottleneck_layer_forward(dropout(dense(x)), input_tensor, LayerNorm); a single adapter is
a Stack: pre_block -> Adapter.pre_forward, compose_single -> Adapter.forward(hidden,
residual_input=residual), then Adapter.post_forward). Dropout is inactive (eval).

Stored per style, for a 32-wide sublayer with reduction factor 8 (bottleneck 4): the
sublayer's dense and LayerNorm weights, inputs x and input_tensor, the adapter's weights
(library init "bert" at seed 0), the sublayer output, the gradients of the adapter's four
tensors for a fixed upstream gradient, the count; and the library's "bert" init of a
768 -> 48 adapter (for distribution checks).
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
COMMIT = "88f18ebd6c127f0e0ddf7c76cb84b37a39b82c12"
CONFIG = {"hidden": 32, "reduction_factor": 8, "tokens": 6, "batch": 2, "seed": 0}


def _stub(name, path=None):
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [str(path)]

    def missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return lambda *a, **k: None

    mod.__getattr__ = missing
    sys.modules[name] = mod
    return mod


def load(ref: Path):
    src = ref / "src" / "adapters"
    _stub("adapters", src).__version__ = "checkout"
    _stub("adapters.utils")
    _stub("adapters.methods", src / "methods")
    cfg = importlib.import_module("adapters.configuration.adapter_config")
    return cfg, importlib.import_module("adapters.methods.modeling")


def library_sublayer(adapter, dense, norm, x, input_tensor):
    h = dense(x)  # dropout inactive
    hidden, _, residual = adapter.pre_forward(h, input_tensor, norm)
    out, _, _ = adapter.forward(hidden, residual_input=residual)
    return adapter.post_forward(out, h, input_tensor, norm)


def main(ref: Path) -> None:
    cfg_mod, modeling = load(ref)
    c = CONFIG
    gen = torch.Generator().manual_seed(1)
    d = c["hidden"]
    dense = torch.nn.Linear(d, d)
    norm = torch.nn.LayerNorm(d, eps=1e-12)
    with torch.no_grad():
        dense.weight.copy_(torch.randn(d, d, generator=gen) * 0.2)
        dense.bias.copy_(torch.randn(d, generator=gen) * 0.1)
        norm.weight.copy_(1 + 0.1 * torch.randn(d, generator=gen))
        norm.bias.copy_(0.1 * torch.randn(d, generator=gen))
    x = torch.randn(c["batch"], c["tokens"], d, generator=gen)
    input_tensor = torch.randn(c["batch"], c["tokens"], d, generator=gen)
    upstream = torch.randn(c["batch"], c["tokens"], d, generator=gen)
    out = {"dense.weight": dense.weight.detach().clone(), "dense.bias": dense.bias.detach().clone()}
    out.update(
        {"norm.weight": norm.weight.detach().clone(), "norm.bias": norm.bias.detach().clone()}
    )
    out.update({"x": x, "input_tensor": input_tensor, "upstream": upstream})
    counts, acts = {}, {}
    for style, config_cls in (
        ("houlsby", cfg_mod.DoubleSeqBnConfig),
        ("pfeiffer", cfg_mod.SeqBnConfig),
    ):
        config = config_cls(reduction_factor=c["reduction_factor"])
        torch.manual_seed(c["seed"])
        adapter = modeling.Adapter("golden", d, d // c["reduction_factor"], config).eval()
        acts[style] = config.non_linearity
        for name, tensor in (
            ("down.weight", adapter.adapter_down[0].weight),
            ("down.bias", adapter.adapter_down[0].bias),
            ("up.weight", adapter.adapter_up.weight),
            ("up.bias", adapter.adapter_up.bias),
        ):
            out[f"{style}.{name}"] = tensor.detach().clone()
        # Move the zero biases so their role in the forward is checked too.
        with torch.no_grad():
            adapter.adapter_down[0].bias.copy_(
                0.1 * torch.randn(d // c["reduction_factor"], generator=gen)
            )
            adapter.adapter_up.bias.copy_(0.1 * torch.randn(d, generator=gen))
        out[f"{style}.loaded.down.bias"] = adapter.adapter_down[0].bias.detach().clone()
        out[f"{style}.loaded.up.bias"] = adapter.adapter_up.bias.detach().clone()
        y = library_sublayer(adapter, dense, norm, x, input_tensor)
        (y * upstream).sum().backward()
        out[f"{style}.output"] = y.detach().clone()
        out[f"{style}.grad.down.weight"] = adapter.adapter_down[0].weight.grad.clone()
        out[f"{style}.grad.down.bias"] = adapter.adapter_down[0].bias.grad.clone()
        out[f"{style}.grad.up.weight"] = adapter.adapter_up.weight.grad.clone()
        out[f"{style}.grad.up.bias"] = adapter.adapter_up.bias.grad.clone()
        counts[style] = sum(p.numel() for p in adapter.parameters())
    torch.manual_seed(c["seed"])
    big = modeling.Adapter("init", 768, 48, cfg_mod.DoubleSeqBnConfig())
    out["init768.down.weight"] = big.adapter_down[0].weight.detach().clone()
    out["init768.up.weight"] = big.adapter_up.weight.detach().clone()
    torch.manual_seed(c["seed"])
    mam = modeling.Adapter("mam", d, 4, cfg_mod.DoubleSeqBnConfig(init_weights="mam_adapter"))
    out["mam.up.weight"] = mam.adapter_up.weight.detach().clone()
    out["mam.down.bias"] = mam.adapter_down[0].bias.detach().clone()

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "adapter-hub/adapters",
        "commit": COMMIT,
        "files": [
            "src/adapters/methods/modeling.py (Adapter)",
            "src/adapters/configuration/adapter_config.py (BnConfig, SeqBnConfig, DoubleSeqBnConfig)",
            "src/adapters/methods/bottleneck.py (bottleneck_layer_forward, pre_block, compose_single)",
        ],
        "command": "/work/main/.venv/bin/python tests/golden/adapter/generate.py <adapters checkout>",
        "config": CONFIG,
        "trainable_params": counts,
        "non_linearity": acts,
        "notes": (
            "Sublayer output = post_forward(forward(pre_forward(dense(x), input_tensor, LN))) "
            "as the library's BERT sublayers compute it with dropout inactive; the adapter "
            "biases were moved off zero before the forward."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
