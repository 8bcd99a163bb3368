"""Golden fixture for AdaLoRA, from Hugging Face PEFT (the installed PyPI package, 0.21.2).

Files used: peft/tuners/adalora/layer.py (SVDLinear forward, reset_lora_parameters,
RankAllocator: budget_schedule, update_ipt, _element_score, _combine_ipt, mask_to_budget,
mask_using_rank_pattern) and peft/tuners/adalora/model.py (AdaLoraModel.forward's
orthogonal regularisation, update_and_allocate), through `get_peft_model`.

Two adapted layers (l0: 24 -> 16, l1: 16 -> 8, tanh between) with init_r 4, target_r 2,
tinit 2, tfinal 2, deltaT 1, total_step 10, lora_alpha 8, beta1 = beta2 = 0.85,
orth_reg_weight 0.5. After loading fixed tensors (lambda nonzero), it stores the forward,
the loss with and without the orthogonal term, the gradients, and then 10 AdamW steps
(lr 1e-2, no weight decay) with `update_and_allocate(step)` after each optimizer.step:
the budget, the lambda masks and every tensor per step. `tests/test_golden_adalora.py`
also runs `reference()` live against the installed PEFT.

No checkout is needed (PyPI package). Command, from this project's root:
    /work/main/.venv/bin/python tests/golden/adalora/generate.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

CONFIG = {
    "shapes_in_out": [[24, 16], [16, 8]],
    "init_r": 4,
    "target_r": 2,
    "tinit": 2,
    "tfinal": 2,
    "deltaT": 1,
    "total_step": 10,
    "lora_alpha": 8,
    "beta1": 0.85,
    "beta2": 0.85,
    "orth_reg_weight": 0.5,
    "lr": 1e-2,
    "batch": 6,
    "seed": 0,
}


class Net(nn.Module):
    """l1(tanh(l0(x))); returns an object with .loss, as PEFT's orthogonal term needs."""

    def __init__(self):
        super().__init__()
        (i0, o0), (i1, o1) = CONFIG["shapes_in_out"]
        self.l0, self.l1 = nn.Linear(i0, o0), nn.Linear(i1, o1)

    def forward(self, x, y=None):
        out = self.l1(torch.tanh(self.l0(x)))
        loss = ((out - y) ** 2).mean() if y is not None else None
        return SimpleNamespace(out=out, loss=loss)


def inputs() -> dict[str, torch.Tensor]:
    """Base weights, adapter tensors to load, and batches, from a fixed generator."""
    gen = torch.Generator().manual_seed(CONFIG["seed"])
    t: dict[str, torch.Tensor] = {}
    r = CONFIG["init_r"]
    for k, (d_in, d_out) in enumerate(CONFIG["shapes_in_out"]):
        t[f"l{k}.weight"] = torch.randn(d_out, d_in, generator=gen) * 0.3
        t[f"l{k}.bias"] = torch.randn(d_out, generator=gen) * 0.1
        t[f"l{k}.A"] = torch.randn(r, d_in, generator=gen) * 0.2
        t[f"l{k}.B"] = torch.randn(d_out, r, generator=gen) * 0.2
        t[f"l{k}.E"] = torch.randn(r, 1, generator=gen) * 0.5
    d_in, d_out = CONFIG["shapes_in_out"][0][0], CONFIG["shapes_in_out"][-1][1]
    for step in range(CONFIG["total_step"]):
        t[f"step{step}.x"] = torch.randn(CONFIG["batch"], d_in, generator=gen)
        t[f"step{step}.y"] = torch.randn(CONFIG["batch"], d_out, generator=gen)
    return t


def peft_config():
    from peft import AdaLoraConfig

    c = CONFIG
    return AdaLoraConfig(
        init_r=c["init_r"],
        target_r=c["target_r"],
        tinit=c["tinit"],
        tfinal=c["tfinal"],
        deltaT=c["deltaT"],
        total_step=c["total_step"],
        lora_alpha=c["lora_alpha"],
        beta1=c["beta1"],
        beta2=c["beta2"],
        orth_reg_weight=c["orth_reg_weight"],
        lora_dropout=0.0,
        target_modules=["l0", "l1"],
    )


def init_statistics() -> dict[str, float]:
    """PEFT's own init on a larger layer: A, B ~ N(0, 0.02), E = 0."""
    from peft import AdaLoraConfig, get_peft_model

    class Big(nn.Module):
        def __init__(self):
            super().__init__()
            self.l0 = nn.Linear(512, 256)

        def forward(self, x):
            return self.l0(x)

    torch.manual_seed(CONFIG["seed"])
    config = AdaLoraConfig(init_r=8, target_r=4, target_modules=["l0"], total_step=10)
    layer = get_peft_model(Big(), config).base_model.model.l0
    a, b, e = (
        layer.lora_A["default"].detach(),
        layer.lora_B["default"].detach(),
        layer.lora_E["default"].detach(),
    )
    return {
        "A_mean": float(a.mean()),
        "A_std": float(a.std()),
        "B_mean": float(b.mean()),
        "B_std": float(b.std()),
        "E_absmax": float(e.abs().max()),
        "A_numel": a.numel(),
        "B_numel": b.numel(),
    }


def reference(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run PEFT's AdaLoRA on the tensors `t`; the numbers the test compares with."""
    from peft import get_peft_model

    base = Net()
    with torch.no_grad():
        for k, layer in enumerate((base.l0, base.l1)):
            layer.weight.copy_(t[f"l{k}.weight"])
            layer.bias.copy_(t[f"l{k}.bias"])
    model = get_peft_model(base, peft_config())
    layers = [model.base_model.model.l0, model.base_model.model.l1]
    with torch.no_grad():
        for k, layer in enumerate(layers):
            layer.lora_A["default"].copy_(t[f"l{k}.A"])
            layer.lora_B["default"].copy_(t[f"l{k}.B"])
            layer.lora_E["default"].copy_(t[f"l{k}.E"])
    out: dict[str, torch.Tensor] = {}

    def tensors(k):
        layer = layers[k]
        return {
            "A": layer.lora_A["default"],
            "B": layer.lora_B["default"],
            "E": layer.lora_E["default"],
        }

    x, y = t["step0.x"], t["step0.y"]
    plain = model.base_model.model(x, y)  # the wrapped model: no orthogonal term
    out["forward"] = plain.out.detach()
    out["loss_task"] = plain.loss.detach().reshape(1)
    # AdaLoraModel.forward adds orth_reg_weight * regu to .loss. It is model.base_model:
    # a PeftModel without a task type calls the wrapped model directly and skips it
    # (PEFT's task-type models, e.g. ForSequenceClassification, call base_model).
    total = model.base_model(x, y).loss
    out["loss_total"] = total.detach().reshape(1)
    total.backward()
    for k in range(2):
        for name, p in tensors(k).items():
            out[f"grad.l{k}.{name}"] = p.grad.detach().clone()
    model.zero_grad(set_to_none=True)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=CONFIG["lr"], weight_decay=0.0)
    allocator = model.base_model.rankallocator
    budgets = []
    for step in range(CONFIG["total_step"]):
        loss = model.base_model(t[f"step{step}.x"], t[f"step{step}.y"]).loss
        loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad(set_to_none=True)
        budgets.append(allocator.budget_schedule(step)[0])
        for k in range(2):
            for name, p in tensors(k).items():
                out[f"step{step}.l{k}.{name}"] = p.detach().clone()
    out["budgets"] = torch.tensor(budgets, dtype=torch.float32)
    trainable = sum(p.numel() for p in params)
    out["trainable"] = torch.tensor([float(trainable)])
    return out


def main(out_dir: str) -> None:
    import peft
    from safetensors.torch import save_file

    t = inputs()
    result = reference(t)
    save_file(
        {k: v.contiguous().float() for k, v in {**t, **result}.items()},
        str(Path(out_dir) / "fixture.safetensors"),
    )
    meta = {
        "repo": f"huggingface/peft (PyPI peft {peft.__version__})",
        "commit": f"peft=={peft.__version__} (installed wheel; no git commit)",
        "files": ["peft/tuners/adalora/layer.py", "peft/tuners/adalora/model.py"],
        "command": "/work/main/.venv/bin/python tests/golden/adalora/generate.py",
        "config": CONFIG,
        "init_statistics": init_statistics(),
        "notes": (
            "step{s}.l{k}.{A,B,E} are the tensors after optimizer.step() and "
            "update_and_allocate(s) at step s; budgets[s] is budget_schedule(s). The test "
            "also reruns reference() live against the installed PEFT."
        ),
    }
    (Path(out_dir) / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("budgets", result["budgets"].tolist())
    print("E at end", [result[f"step9.l{k}.E"].view(-1).tolist() for k in range(2)])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent))
