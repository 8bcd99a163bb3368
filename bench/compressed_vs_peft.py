"""QLoRA in peftbench (torchao NF4 base storage) against PEFT + bitsandbytes, and bf16
LoRA in both, on minilm-l6: base bytes, training peak, step time, loss, init agreement.

Four builds, each trained in its own subprocess (so each peak is its own):

- `lora/native`: peftbench's lora on the bf16 backbone;
- `lora/peft`: Hugging Face PEFT's LoraModel (the peft bridge) on the bf16 backbone;
- `qlora/torchao`: peftbench's lora on the nf4 base storage (suite/models/storage.py:
  torchao NF4Tensor, double quantisation; every Linear and Embedding matrix stored);
- `qlora/bnb`: PEFT's LoRA on bitsandbytes `Linear4bit` (nf4, compress_statistics:
  QLoRA's double quantisation, compute dtype bf16); as transformers' BitsAndBytesConfig
  does, only the Linear layers are quantised and the embeddings stay bf16.

All: q and v, r 8, alpha 16, AdamW lr 1e-4 through peftbench's driver, batch 16 x 128
random tokens, a fixed batch. Printed per build: frozen base bytes as stored (bnb: the
packed codes plus its quant_state tensors), the training peak (CUDA:
max_memory_allocated after a reset once the model is built, weights included), the
median step time, the loss after the steps; then ratios torchao / bnb, each QLoRA over
its own bf16 LoRA, and the largest difference of the two QLoRA models' outputs at
initialisation (B = 0: both are their quantised bases) against bf16's.

    .venv/bin/python bench/compressed_vs_peft.py [--device cuda] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import methods_vs_peft as mvp  # noqa: E402  (batch, train_step, optimizer)

BUILDS = ("lora/native", "lora/peft", "qlora/torchao", "qlora/bnb")


def _catalog():
    from suite.registry import Catalog

    roots = [REPO / "suite", *(REPO / "methods" / m for m in ("lora", "peft"))]
    return Catalog.discover(roots, builtin=False)


def _bnb_linears(backbone: torch.nn.Module) -> None:
    """Every nn.Linear of `backbone` as a bitsandbytes nf4 Linear4bit (quantised on .to)."""
    import bitsandbytes as bnb

    for name, module in list(backbone.named_modules()):
        if type(module) is torch.nn.Linear:
            new = bnb.nn.Linear4bit(
                module.in_features, module.out_features, bias=module.bias is not None,
                compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
            )  # fmt: skip
            new.weight = bnb.nn.Params4bit(
                module.weight.data.to(torch.bfloat16), requires_grad=False,
                compress_statistics=True, quant_type="nf4",
            )  # fmt: skip
            if module.bias is not None:
                new.bias = torch.nn.Parameter(module.bias.data, requires_grad=False)
            parent, _, child = name.rpartition(".")
            setattr(backbone.get_submodule(parent) if parent else backbone, child, new)


def build(name: str):
    """The task model of one build, on mvp.DEVICE."""
    from suite import conformance as C
    from suite.cells import resolve_method
    from suite.conformance_bench import bench_from_backbone
    from suite.methods.api import PrepareContext
    from suite.models.loading import load_backbone
    from suite.models.storage import apply_storage
    from suite.specs.matrix import MethodEntry
    from suite.train.prepare import prepare_model

    catalog = _catalog()
    preset = catalog.models.get("minilm-l6").spec
    backbone = load_backbone(preset).to(torch.bfloat16)
    if name == "qlora/torchao":
        apply_storage(backbone, "nf4")
    if name == "qlora/bnb":
        _bnb_linears(backbone)
        backbone.to(mvp.DEVICE)  # bitsandbytes quantises here
    model = bench_from_backbone(backbone, preset, vocab=30522).build(0)
    params = {"r": mvp.R, "alpha": mvp.ALPHA, "targets": "qv"}
    if name.endswith(("native", "torchao")):
        entry = MethodEntry(method="lora", params=params)
    else:
        config = {"r": mvp.R, "lora_alpha": mvp.ALPHA}
        entry = MethodEntry(method="peft", params={"config": config, "targets": "qv"})
    spec = C.instantiate(resolve_method(catalog, entry))
    prepared = prepare_model(spec, model, PrepareContext(preset, 0, mvp.DEVICE)).prepared
    return prepared.model.to(mvp.DEVICE)


def base_bytes(model: torch.nn.Module) -> int:
    """The frozen backbone as stored; a bitsandbytes 4-bit weight adds its quant_state."""
    from suite.models.storage import module_bytes

    total = module_bytes(model.backbone, trainable=False)
    for module in model.backbone.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is None:
            continue
        tensors = [state.absmax, state.code]
        if getattr(state, "state2", None) is not None:
            tensors += [state.state2.absmax, state.state2.code]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def child(name: str, steps: int) -> None:
    """In a subprocess: train `steps` steps, print one JSON line of measurements."""
    from suite.train.measure import PeakMemory

    model = build(name)
    model.train()
    opt, data = mvp.optimizer(model), mvp.batch()
    meter = PeakMemory(mvp.DEVICE)
    meter.reset()
    times, loss = [], None
    for _ in range(steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(**data).float(), data["labels"])
        opt.optimizer.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        loss.backward()
        opt.optimizer_step()
        if mvp.DEVICE.type == "cuda":
            torch.cuda.synchronize(mvp.DEVICE)
        times.append(time.perf_counter() - start)
    out = {"base_bytes": base_bytes(model), "peak": meter.peak_bytes(),
           "step_s": statistics.median(times[2:] or times), "loss": float(loss.detach())}  # fmt: skip
    print(json.dumps(out))


def run_child(name: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--steps", str(steps)]
    cmd += ["--device", mvp.DEVICE.type]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def init_agreement() -> dict[str, float]:
    """Largest |output - bf16 output| of each QLoRA at initialisation (B = 0)."""
    data = mvp.batch(1)
    outs = {}
    for name in ("lora/native", "qlora/torchao", "qlora/bnb"):
        model = build(name).eval()
        with torch.inference_mode():
            outs[name] = model(**data).float()
        del model
    ref = outs["lora/native"]
    return {n: float((outs[n] - ref).abs().max()) for n in ("qlora/torchao", "qlora/bnb")} | {
        "torchao vs bnb": float((outs["qlora/torchao"] - outs["qlora/bnb"]).abs().max())
    }


def _ratio(a: dict, b: dict, key: str) -> str:
    if "error" in a or "error" in b:
        return "n/a"
    return f"{a[key] / b[key]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--child", metavar="BUILD", choices=BUILDS)
    args = parser.parse_args()
    mvp.DEVICE = torch.device(args.device)
    if args.child:
        child(args.child, args.steps)
        return
    import bitsandbytes
    import peft
    import torchao

    where = torch.cuda.get_device_name(mvp.DEVICE) if mvp.DEVICE.type == "cuda" else "CPU"
    print(
        f"minilm-l6, q+v, r={mvp.R}, batch {mvp.BATCH} x {mvp.LENGTH}, {where}, {args.steps} steps"
    )
    print(f"torch {torch.__version__}, torchao {torchao.__version__}, "
          f"bitsandbytes {bitsandbytes.__version__}, peft {peft.__version__}")  # fmt: skip
    rows = {name: run_child(name, args.steps) for name in BUILDS}
    print("| build | base bytes | training peak | step time | loss |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        if "error" in row:
            print(f"| {name} | failed: {row['error']} | | | |")
            continue
        print(f"| {name} | {row['base_bytes']:,} | {row['peak'] / 2**20:.1f} MiB "
              f"| {row['step_s'] * 1e3:.1f} ms | {row['loss']:.4f} |")  # fmt: skip
    t, b = rows["qlora/torchao"], rows["qlora/bnb"]
    for key, label in (("base_bytes", "base bytes"), ("peak", "training peak"),
                       ("step_s", "step time")):  # fmt: skip
        print(f"{label}: torchao/bnb {_ratio(t, b, key)}; "
              f"torchao/native-bf16 {_ratio(t, rows['lora/native'], key)}; "
              f"bnb/peft-bf16 {_ratio(b, rows['lora/peft'], key)}; "
              f"native/peft (bf16) {_ratio(rows['lora/native'], rows['lora/peft'], key)}")  # fmt: skip
    print("init max |out - bf16 out|:", json.dumps(init_agreement()))


if __name__ == "__main__":
    main()
