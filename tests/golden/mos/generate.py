"""Golden fixture for MoS, from the authors' code.

Repository: Forence1999/MoS, commit cafb8dd8d1c37856ebefa609ebc8264072fc502b.
File used: modules/Tied_LoRA.py (share_lora_tiedly, Linear4bit__Re_Init__,
LoraLayer_update_layer, LoraLayer_reset_lora_parameters, transform_chunks,
LoraLinear4bit_Tied_LoRA_forward, kaiming_uniform_), imported unchanged from a checkout.

The module imports PEFT (an old release with `LoraLayer(in_features, out_features)`),
bitsandbytes and the 4-bit `Linear4bit` class; none of that can run here, so `peft`,
`peft.tuners.lora`, `peft.utils` and `bitsandbytes` are stubbed in sys.modules with just
what the file touches: a LoraLayer base with PEFT's per-adapter dicts (r, lora_alpha,
scaling, lora_dropout, lora_A, lora_B), set_adapter / active_adapter(s) /
disable_adapters / merged as in PEFT 0.7-0.10, a Linear4bit (nn.Module + LoraLayer) that
holds an ordinary fp32 nn.Linear as base_layer with the bnb attributes share_lora_tiedly
reads, and a dataclass LoraConfig. The MoS computation itself (pools, indices, init,
forward) is the file's own. Its forward converts `x` with `lora_A.weight.dtype` (an
AttributeError on a tensor) unless autocast is on, as in the authors' bf16 GPU runs; the
driver turns the CUDA autocast flag on, which leaves these CPU fp32 ops unchanged.

Model: 3 decoder layers, hidden 16 (q_proj, v_proj: 16 -> 16), MoS r 3, valid_param_lora_r
2, valid_param_private_r 1, num_chunk_per_vec 2, lora_alpha 8, seed 0.

Command (from this project's root, with the checkout at $MOS):
    /work/main/.venv/bin/python tests/golden/mos/generate.py $MOS
"""

from __future__ import annotations

import dataclasses
import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from torch import nn

LAYERS, HIDDEN = 3, 16
R, VALID_R, PRIVATE_R, SHARDS, ALPHA = 3, 2, 1, 2, 8
KINDS = ("q_proj", "v_proj")
SEED = 0


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


class LoraLayer:
    """PEFT's LoraLayer state, as Tied_LoRA.py uses it (old signature)."""

    adapter_layer_names = ("lora_A", "lora_B")

    def __init__(self, in_features: int, out_features: int, **kwargs):
        self.r, self.lora_alpha, self.scaling = {}, {}, {}
        self.lora_dropout = nn.ModuleDict({})
        self.lora_A = nn.ModuleDict({})
        self.lora_B = nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters = []
        self._active_adapter = "default"
        self.in_features, self.out_features = in_features, out_features
        self.kwargs = kwargs

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    @property
    def disable_adapters(self) -> bool:
        return self._disable_adapters

    @property
    def active_adapter(self):
        return self._active_adapter

    @property
    def active_adapters(self) -> list[str]:
        a = self._active_adapter
        return [a] if isinstance(a, str) else a

    def set_adapter(self, adapter_names) -> None:
        if isinstance(adapter_names, str):
            adapter_names = [adapter_names]
        for layer_name in self.adapter_layer_names:
            for key, layer in getattr(self, layer_name).items():
                layer.requires_grad_(key in adapter_names)
        self._active_adapter = adapter_names


class Linear4bit(nn.Module, LoraLayer):
    """A PEFT LoRA layer around a (here fp32) base linear, before MoS replaces it."""

    def __init__(self, base_layer: nn.Linear, r: int, lora_alpha: int):
        nn.Module.__init__(self)
        LoraLayer.__init__(self, base_layer.in_features, base_layer.out_features)
        self.base_layer = base_layer
        base_layer.compute_dtype = torch.float32
        base_layer.weight.compress_statistics = True
        base_layer.weight.quant_type = "nf4"
        self.r["default"], self.lora_alpha["default"] = r, lora_alpha
        self.scaling["default"] = lora_alpha / r
        self.lora_dropout["default"] = nn.Identity()
        self.lora_A["default"] = nn.Linear(base_layer.in_features, r, bias=False)
        self.lora_B["default"] = nn.Linear(r, base_layer.out_features, bias=False)
        self.set_adapter("default")


@dataclasses.dataclass
class LoraConfig:
    r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    fan_in_fan_out: bool = False


def import_reference(checkout: Path):
    _module("bitsandbytes")
    peft = _module(
        "peft",
        LoraConfig=LoraConfig,
        get_peft_model_state_dict=None,
        PromptLearningConfig=None,
    )
    peft.tuners = _module("peft.tuners")
    peft.tuners.lora = _module("peft.tuners.lora", LoraLayer=LoraLayer, Linear4bit=Linear4bit)
    peft.utils = _module(
        "peft.utils",
        SAFETENSORS_WEIGHTS_NAME="adapter_model.safetensors",
        WEIGHTS_NAME="adapter_model.bin",
    )
    path = checkout / "modules" / "Tied_LoRA.py"
    spec = importlib.util.spec_from_file_location("Tied_LoRA", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeModel(nn.Module):
    """Llama-like names (model.layers.{i}.self_attn.{q,v}_proj) and config fields."""

    def __init__(self, gen: torch.Generator):
        super().__init__()
        self.config = types.SimpleNamespace(
            hidden_size=HIDDEN,
            intermediate_size=2 * HIDDEN,
            num_attention_heads=2,
            num_key_value_heads=2,
            num_hidden_layers=LAYERS,
        )
        self.active_peft_config = types.SimpleNamespace(fan_in_fan_out=False, r=4)
        self.model = nn.Module()
        self.model.layers = nn.ModuleList()
        for _ in range(LAYERS):
            block = nn.Module()
            block.self_attn = nn.Module()
            for kind in KINDS:
                base = nn.Linear(HIDDEN, HIDDEN)
                with torch.no_grad():
                    base.weight.copy_(torch.randn(HIDDEN, HIDDEN, generator=gen) * 0.3)
                    base.bias.copy_(torch.randn(HIDDEN, generator=gen) * 0.1)
                base.weight.requires_grad_(False)
                base.bias.requires_grad_(False)
                setattr(block.self_attn, kind, Linear4bit(base, r=4, lora_alpha=ALPHA))
            self.model.layers.append(block)


def main(checkout: str, out_dir: str) -> None:
    tied = import_reference(Path(checkout).resolve())
    gen = torch.Generator().manual_seed(SEED)
    model = FakeModel(gen)
    config = tied.LoraConfig_Tied_Sharing(
        r=R,
        lora_alpha=ALPHA,
        enable_lora_vec=True,
        valid_param_lora_r=VALID_R,
        valid_param_private_r=PRIVATE_R,
        num_chunk_per_vec=SHARDS,
        ft_mode="mos",
    )
    torch.manual_seed(SEED)
    tied.share_lora_tiedly(model, config)

    layers = {
        (i, k): getattr(model.model.layers[i].self_attn, k) for i in range(LAYERS) for k in KINDS
    }
    name = "default"
    t: dict[str, torch.Tensor] = {}
    for kind in KINDS:
        first = layers[(0, kind)]
        t[f"{kind}.init.pool_A"] = first.lora_A[name].weight.detach().clone()
        t[f"{kind}.init.pool_B"] = first.lora_B[name].weight.detach().clone()
        for i in range(LAYERS):
            m = layers[(i, kind)]
            assert m.lora_A[name] is first.lora_A[name]  # one pool per kind
            t[f"{kind}.{i}.mask_A"] = m.lora_pair_mask[name].detach().clone()
            t[f"{kind}.{i}.mask_B"] = m.lora_pair_mask_B[name].detach().clone()
            t[f"{kind}.{i}.weight"] = m.base_layer.weight.detach().clone()
            t[f"{kind}.{i}.bias"] = m.base_layer.bias.detach().clone()
            assert float((m.lora_A_vec[name] * m.lora_A_anti_vec[name]).sub(1).abs().max()) == 0

    # Load fixed pools (B nonzero so the update is visible) and run the reference forward.
    with torch.no_grad():
        for kind in KINDS:
            pool_a = layers[(0, kind)].lora_A[name].weight
            pool_b = layers[(0, kind)].lora_B[name].weight
            pool_a.copy_(torch.randn(pool_a.shape, generator=gen) * 0.3)
            pool_b.copy_(torch.randn(pool_b.shape, generator=gen) * 0.3)
            t[f"{kind}.pool_A"] = pool_a.detach().clone()
            t[f"{kind}.pool_B"] = pool_b.detach().clone()
    torch.set_autocast_enabled("cuda", True)  # see the docstring
    try:
        total = 0.0
        eye = torch.eye(HIDDEN)
        for (i, kind), m in layers.items():
            x = torch.randn(2, 3, HIDDEN, generator=gen)
            up = torch.randn(2, 3, HIDDEN, generator=gen)
            y = m(x)
            total = total + (y * up).sum()
            t[f"{kind}.{i}.x"], t[f"{kind}.{i}.upstream"], t[f"{kind}.{i}.out"] = x, up, y.detach()
            with torch.no_grad():
                # The reference has no merge (it asserts unmerged); its update on the
                # identity is delta_W^T.
                t[f"{kind}.{i}.delta"] = (m(eye) - m.base_layer(eye)).T.clone()
        total.backward()
    finally:
        torch.set_autocast_enabled("cuda", False)
    for kind in KINDS:
        t[f"{kind}.grad.pool_A"] = layers[(0, kind)].lora_A[name].weight.grad.detach().clone()
        t[f"{kind}.grad.pool_B"] = layers[(0, kind)].lora_B[name].weight.grad.detach().clone()
    trainable = {
        id(p): p.numel() for m in layers.values() for p in m.parameters() if p.requires_grad
    }

    from safetensors.torch import save_file

    tensors = {
        k: (v.float() if v.is_floating_point() else v.long()).contiguous() for k, v in t.items()
    }
    save_file(tensors, str(Path(out_dir) / "fixture.safetensors"))
    meta = {
        "repo": "Forence1999/MoS",
        "commit": "cafb8dd8d1c37856ebefa609ebc8264072fc502b",
        "files": ["modules/Tied_LoRA.py"],
        "command": "/work/main/.venv/bin/python tests/golden/mos/generate.py $MOS",
        "config": {
            "layers": LAYERS,
            "hidden": HIDDEN,
            "kinds": list(KINDS),
            "lora_r": R,
            "valid_param_lora_r": VALID_R,
            "valid_param_private_r": PRIVATE_R,
            "num_chunk_per_vec": SHARDS,
            "lora_alpha": ALPHA,
            "seed": SEED,
        },
        "trainable_params": sum(trainable.values()),
        "notes": (
            "peft, peft.tuners.lora, peft.utils and bitsandbytes stubbed (see generate.py); "
            "CUDA autocast flag on so the forward skips its broken dtype conversion. "
            "pool_B is the reference's lora_B weight, (d_out / l) x pool, i.e. transposed "
            "against a shard-per-row layout. delta is the reference update on the identity, "
            "transposed: delta_W (d_out x d_in)."
        ),
    }
    (Path(out_dir) / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    print({k: v.tolist() for k, v in t.items() if "mask" in k})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).parent))
