"""Golden fixture for S2FT, produced by the authors' own code.

Repository: Infini-AI-Lab/S2FT, commit a58edbb556d9251d8cb2a34f359b34f1958a3270.
Files run: experiments/train/finetune.py (main(): set_random_seed, then the --s2 block:
random.sample over all heads / channels of all layers, convert_mha_layer_to_s2,
convert_ffn_layer_to_s2, only_optimize_s2_parameters), experiments/utils/s2_utils.py
(the co-permutation and the S2RowLinear replacements; convert_s2_to_linear_layer for
the merge), s2ft/s2.py (S2RowLinear: forward, s2 parameter, fuse_s2_weight).

Command (from the peftbench repository root):

    /work/main/.venv/bin/python tests/golden/s2ft/generate.py /path/to/Infini-AI-Lab-S2FT

finetune.main() runs unmodified with the arguments of train_script/*_s2.sh (v_ratio 0,
u_ratio 0; o_ratio and d_ratio below). Stubbed around it: `deepspeed` (distributed init,
accelerator, optimisers, config helpers: nothing runs before the S2 block but
get_accelerator().device_name() / manual_seed_all and deepspeed.add_config_arguments),
torch.distributed.get_rank / get_world_size / barrier (one process), the tokenizer
loader, and create_hf_model, which returns the tiny LLaMA built here;
make_model_gradient_checkpointing_compatible, the call right after the S2 block, ends
the run and hands the converted model back.

The model: LlamaForCausalLM(LlamaConfig(vocab 16, hidden 32, 16 heads of dim 2, 16 KV
heads, intermediate 48, 2 layers)) built under torch.manual_seed(0); its parameter sums
are stored so the test can tell it rebuilt the same model. Stored: the selected heads /
channels per layer (the arguments the reference passed to the converters), each layer's
unit order (read back from the reference's permuted weights, checked equal across the
coupled q / k / v / o and up / gate / down weights), and with fixed s2 values loaded:
the LlamaModel output for fixed input ids, the s2 gradients for a fixed upstream
gradient, the delta of the fused (merged) output projections, and the count.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
COMMIT = "a58edbb556d9251d8cb2a34f359b34f1958a3270"
CONFIG = {
    "llama": {
        "vocab_size": 16,
        "hidden_size": 32,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "max_position_embeddings": 32,
    },
    "model_seed": 0,
    "seed": 2,
    "o_ratio": 0.25,
    "d_ratio": 0.1,
    "tokens": [2, 7],
}


class Converted(Exception):
    def __init__(self, model):
        self.model = model


def build_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(CONFIG["model_seed"])
    return LlamaForCausalLM(LlamaConfig(**CONFIG["llama"])).eval()


def _stub_deepspeed() -> None:
    class Accelerator:
        def device_name(self, *a):
            return "cpu"

        def manual_seed_all(self, seed):
            pass

        def set_device(self, *a):
            pass

    acc = Accelerator()
    names = [
        "deepspeed",
        "deepspeed.ops",
        "deepspeed.ops.adam",
        "deepspeed.accelerator",
        "deepspeed.comm",
    ]
    mods = {n: types.ModuleType(n) for n in names}
    for name, mod in mods.items():  # find_spec("deepspeed") must not fail (transformers asks)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    mods["deepspeed"].add_config_arguments = lambda parser: parser
    mods["deepspeed"].init_distributed = lambda *a, **k: None
    mods["deepspeed"].get_accelerator = lambda: acc
    mods["deepspeed.accelerator"].get_accelerator = lambda: acc
    mods["deepspeed.ops.adam"].DeepSpeedCPUAdam = mods["deepspeed.ops.adam"].FusedAdam = None
    sys.modules.update(mods)
    torch.distributed.get_rank = lambda *a, **k: 0
    torch.distributed.get_world_size = lambda *a, **k: 1
    torch.distributed.barrier = lambda *a, **k: None


def unit_order(original: torch.Tensor, permuted: torch.Tensor) -> list[int]:
    """The order o with permuted[i] == original[o[i]] (units along dim 0)."""
    order = []
    for row in permuted:
        hits = [j for j, ref in enumerate(original) if torch.equal(ref, row)]
        assert len(hits) == 1
        order.append(hits[0])
    return order


def main(ref: Path) -> None:
    sys.path.insert(0, str(ref))
    sys.path.insert(0, str(ref / "experiments"))
    _stub_deepspeed()
    spec = importlib.util.spec_from_file_location("finetune", ref / "experiments/train/finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    from utils.s2_utils import convert_s2_to_linear_layer

    c = CONFIG
    model = build_model()
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    selected = {}

    def record(convert, key):
        def wrapped(m, sel):
            selected[key] = {
                name: {int(i): list(v) for i, v in d.items()} for name, d in sel.items()
            }
            return convert(m, sel)

        return wrapped

    finetune.convert_mha_layer_to_s2 = record(finetune.convert_mha_layer_to_s2, "mha")
    finetune.convert_ffn_layer_to_s2 = record(finetune.convert_ffn_layer_to_s2, "ffn")
    finetune.load_hf_tokenizer = lambda *a, **k: types.SimpleNamespace(model_max_length=0)
    finetune.create_hf_model = lambda *a, **k: model

    def stop(m):
        raise Converted(m)

    finetune.make_model_gradient_checkpointing_compatible = stop
    sys.argv = [
        "finetune.py",
        "--model_name_or_path",
        "tiny",
        "--s2",
        "--v_ratio",
        "0.0",
        "--o_ratio",
        str(c["o_ratio"]),
        "--u_ratio",
        "0.0",
        "--d_ratio",
        str(c["d_ratio"]),
        "--seed",
        str(c["seed"]),
    ]
    try:
        finetune.main()
    except Converted as done:
        model = done.model

    heads, hd = (
        c["llama"]["num_attention_heads"],
        c["llama"]["hidden_size"] // c["llama"]["num_attention_heads"],
    )
    orders = {"mha": [], "ffn": []}
    for i, layer in enumerate(model.model.layers):
        pre = f"model.layers.{i}."
        order = None
        for name in ("q_proj", "k_proj", "v_proj"):
            w0 = original[pre + f"self_attn.{name}.weight"].reshape(heads, -1)
            w = getattr(layer.self_attn, name).weight.detach().reshape(heads, -1)
            o = unit_order(w0, w)
            assert order is None or o == order
            order = o
        o_w0 = original[pre + "self_attn.o_proj.weight"].reshape(-1, heads, hd).transpose(0, 1)
        o_w = layer.self_attn.o_proj.weight.detach().reshape(-1, heads, hd).transpose(0, 1)
        assert unit_order(o_w0.reshape(heads, -1), o_w.reshape(heads, -1)) == order
        orders["mha"].append(order)
        order = None
        for name in ("up_proj", "gate_proj"):
            o = unit_order(
                original[pre + f"mlp.{name}.weight"], getattr(layer.mlp, name).weight.detach()
            )
            assert order is None or o == order
            order = o
        d_w0 = original[pre + "mlp.down_proj.weight"].T
        assert unit_order(d_w0, layer.mlp.down_proj.weight.detach().T) == order
        orders["ffn"].append(order)

    out = {}
    gen = torch.Generator().manual_seed(1)
    s2 = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, p in s2.items():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            out[f"s2.{name}"] = p.detach().clone()
    ids = torch.randint(0, c["llama"]["vocab_size"], c["tokens"], generator=gen)
    hidden = model.model(input_ids=ids).last_hidden_state
    upstream = torch.randn(hidden.shape, generator=gen)
    (hidden * upstream).sum().backward()
    out.update({"input_ids": ids, "hidden": hidden.detach().clone(), "upstream": upstream})
    for name, p in s2.items():
        out[f"grad.{name}"] = p.grad.clone()
    permuted = {
        n: m.weight.detach().clone()
        for n, m in model.named_modules()
        if type(m).__name__ == "S2RowLinear"
    }
    convert_s2_to_linear_layer(model)
    for name, m in model.named_modules():
        if name in permuted:
            delta = m.weight.detach() - permuted[name]
            end = m.end
            assert m.start == 0 and float(delta[:, end:].abs().max()) == 0.0
            out[f"delta.{name}"] = delta[:, :end].clone()

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "Infini-AI-Lab/S2FT",
        "commit": COMMIT,
        "files": ["experiments/train/finetune.py", "experiments/utils/s2_utils.py", "s2ft/s2.py"],
        "command": "/work/main/.venv/bin/python tests/golden/s2ft/generate.py <S2FT checkout>",
        "config": CONFIG,
        "model_param_sums": {k: float(v.double().sum()) for k, v in original.items()},
        "selected": selected,
        "orders": orders,
        "trainable_params": int(sum(p.numel() for p in s2.values())),
        "notes": (
            "deepspeed, torch.distributed's rank queries, the tokenizer loader and "
            "create_hf_model are stubbed; finetune.main() itself runs from its start to "
            "the end of the S2 block. The attention order is convert_mha_layer_to_s2's "
            "only_v + vo + only_o (lists of Python sets, so not always ascending) + the "
            "rest; the FFN order is only_u + ud + only_d (in selection order) + the rest. "
            "delta.<o_proj|down_proj> is the fused weight minus the permuted W0, columns "
            "[0, end) (the rest is exactly zero)."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
