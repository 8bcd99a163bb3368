"""Golden fixture for IncreLoRA, from the authors' code.

Repository: FeiyuZhang98/IncreLoRA, commit 51a2d734af7883ef90425206057c1ef25997b359.
Files used: loralib/loralib/increlora.py (SVDLinear with the loraW backward-hook score,
add_reserve_param, RankAllocator.update_and_increase / increase_to_target_rank),
NLU/src/transformers/optimization.py (get_linear_schedule_with_warmup(multi_lr=True) ->
Multi_LambdaLR), NLU/src/transformers/trainer.py (Trainer.compute_svd_orth_regu, called
unbound; the training step's order: loss + reg_orth_coef * regu, backward, clip,
update_and_increase, optimizer.step, lr_scheduler.step, zero_grad), and
NLU/scripts/rank=8/*.sh (--multi_lr True --advance_learn True, lora_r 1).

Run on three SVDLinear layers (24 -> 16 -> 16 -> 8, tanh between, squared error to a
fixed target) for 12 steps with torch.optim.AdamW (the NLU trainer uses its own AdamW
copy; the optimiser is not part of the method and peftbench uses torch's), max_grad_norm
1.0 (the HF default the scripts keep) and the reference's allocator and scheduler.
`transformers.dependency_versions_check` (the fork's install-time version checks) is
stubbed in sys.modules, LambdaLR.__init__ is wrapped to accept the `verbose` argument that
torch 2.13 no longer takes, torch.norm returns a copy inside compute_svd_orth_regu (whose
in-place `+=` on a norm output current autograd rejects), and the fork needs `pkg_resources` and `ipdb` on the path.

Command (from this project's root, with the checkout at $INCRELORA and setuptools<70 and
ipdb installed with `pip install --target $EXTRA`):
    PYTHONPATH=$EXTRA /work/main/.venv/bin/python tests/golden/increlora/generate.py $INCRELORA
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import torch

SHAPES = [(24, 16), (16, 16), (16, 8)]  # (in, out) of the three adapted layers
R, TARGET_RANK, ADD_R, TOP_H = 1, 3, 1, 2
INIT_WARMUP, INCRE_INTERVAL = 2, 2
ALPHA, REG_ORTH = 16, 0.1
STEPS, WARMUP, LR, GROUP_WD, MAX_GRAD_NORM = 12, 3, 1e-2, 0.01, 1.0
BATCH, SEED = 6, 0


def import_reference(checkout: Path):
    stub = types.ModuleType("transformers.dependency_versions_check")
    stub.__spec__ = importlib.machinery.ModuleSpec(stub.__name__, None)
    stub.dep_version_check = lambda *args, **kwargs: None
    sys.modules[stub.__name__] = stub
    # torch >= 2.7 dropped LambdaLR's `verbose` argument, which Multi_LambdaLR passes
    # positionally: accept and ignore it (a torch-version shim; nothing else changes).
    lambda_init = torch.optim.lr_scheduler.LambdaLR.__init__

    def init_without_verbose(self, optimizer, lr_lambda, last_epoch=-1, verbose=None):
        lambda_init(self, optimizer, lr_lambda, last_epoch)

    torch.optim.lr_scheduler.LambdaLR.__init__ = init_without_verbose
    sys.path[:0] = [str(checkout / "NLU" / "src"), str(checkout / "loralib")]
    import loralib
    from transformers.optimization import get_linear_schedule_with_warmup
    from transformers.trainer import Trainer

    assert Path(loralib.__file__).is_relative_to(checkout), loralib.__file__

    def svd_orth_regu(model):
        # compute_svd_orth_regu accumulates with `regu_loss += norm(...)`, in place on a
        # norm's output, which current torch saves for backward: hand it copies.
        norm = torch.norm
        torch.norm = lambda *args, **kwargs: norm(*args, **kwargs).clone()
        try:
            return Trainer.compute_svd_orth_regu(None, model)
        finally:
            torch.norm = norm

    return loralib, get_linear_schedule_with_warmup, svd_orth_regu


def main(checkout: str, out_dir: str) -> None:
    loralib, get_schedule, svd_orth_regu = import_reference(Path(checkout).resolve())
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    layers = [loralib.SVDLinear(i, o, r=R, lora_alpha=ALPHA, lora_dropout=0.0) for i, o in SHAPES]
    model = torch.nn.Sequential(*layers)
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for k, layer in enumerate(layers):
            layer.bias.requires_grad_(False)  # mark_only_lora_as_trainable(bias="none")
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.3)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen) * 0.1)
            tensors[f"l{k}.weight"] = layer.weight.detach().clone()
            tensors[f"l{k}.bias"] = layer.bias.detach().clone()
            # The reference's own init: E = 0, A and B ~ N(0, 0.02) (torch.manual_seed(0)).
            tensors[f"l{k}.init.A"] = layer.lora_A[0].detach().clone()
            tensors[f"l{k}.init.E"] = layer.lora_E[0].detach().clone()
            tensors[f"l{k}.init.B"] = layer.lora_B[0].detach().clone()

    def forward(x):
        return layers[2](torch.tanh(layers[1](torch.tanh(layers[0](x)))))

    allocator = loralib.RankAllocator(
        model,
        lora_r=R,
        target_rank=TARGET_RANK,
        init_warmup=INIT_WARMUP,
        incre_interval=INCRE_INTERVAL,
        top_h=TOP_H,
        advance_learn=True,
        beta1=0.85,
        beta2=0.85,
        total_step=STEPS,
        weight_decay=GROUP_WD,
        incre_rank_num=ADD_R,
    )
    allocator.set_total_step(STEPS)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": params, "weight_decay": 0.0}], lr=LR)
    scheduler = get_schedule(optimizer, WARMUP, STEPS, multi_lr=True)
    assert type(scheduler).__name__ == "Multi_LambdaLR"

    n_layers = len(layers)
    lrs = torch.full((STEPS, 8), float("nan"))
    ranks = torch.zeros(STEPS, n_layers)
    scores = torch.zeros(STEPS, n_layers)
    ema_ipt = torch.zeros(STEPS, n_layers)
    ema_unc = torch.zeros(STEPS, n_layers)
    losses = torch.zeros(STEPS)
    group_sizes, group_wd, group_steps = [], [], []
    reserves: dict[int, int] = {k: 0 for k in range(n_layers)}
    for step in range(STEPS):
        x = torch.randn(BATCH, SHAPES[0][0], generator=gen)
        y = torch.randn(BATCH, SHAPES[-1][1], generator=gen)
        tensors[f"step{step}.x"], tensors[f"step{step}.y"] = x, y
        task = ((forward(x) - y) ** 2).mean()
        loss = task + REG_ORTH * svd_orth_regu(model)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM, error_if_nonfinite=False)
        groups_before = len(optimizer.param_groups)
        allocator.update_and_increase(model, step, optimizer)
        for group in optimizer.param_groups[groups_before:]:
            group_sizes.append(sum(p.numel() for p in group["params"]))
            group_wd.append(group["weight_decay"])
            group_steps.append(step)
        for k, layer in enumerate(layers):
            # Reserves created in this step, stored as created (they have no gradient yet).
            while reserves[k] + R < len(layer.lora_A):
                i = reserves[k] + R
                tensors[f"l{k}.reserve{reserves[k]}.A"] = layer.lora_A[i].detach().clone()
                tensors[f"l{k}.reserve{reserves[k]}.B"] = layer.lora_B[i].detach().clone()
                tensors[f"l{k}.reserve{reserves[k]}.E"] = layer.lora_E[i].detach().clone()
                reserves[k] += 1
            ranks[step, k] = float(layer.ranknum)
            scores[step, k] = float(layer.score)
            name = allocator.name_set[k]
            if name in allocator.exp_avg_ipt:
                ema_ipt[step, k] = float(allocator.exp_avg_ipt[name])
                ema_unc[step, k] = float(allocator.exp_avg_unc[name])
        for g, group in enumerate(optimizer.param_groups):
            lrs[step, g] = group["lr"]  # the learning rate this optimizer.step uses
        losses[step] = float(task)
        optimizer.step()
        scheduler.step()
        model.zero_grad()

    with torch.no_grad():
        for k, layer in enumerate(layers):
            tensors[f"l{k}.final.A"] = torch.cat(list(layer.lora_A), 0)
            tensors[f"l{k}.final.E"] = torch.cat(list(layer.lora_E), 0)
            tensors[f"l{k}.final.B"] = torch.cat(list(layer.lora_B), 1)
    tensors.update(
        {
            "lrs": lrs,
            "ranks": ranks,
            "scores": scores,
            "ema_ipt": ema_ipt,
            "ema_unc": ema_unc,
            "losses": losses,
        }
    )
    from safetensors.torch import save_file

    out = Path(out_dir)
    save_file(
        {k: v.contiguous().float() for k, v in tensors.items()}, str(out / "fixture.safetensors")
    )
    meta = {
        "repo": "FeiyuZhang98/IncreLoRA",
        "commit": "51a2d734af7883ef90425206057c1ef25997b359",
        "files": [
            "loralib/loralib/increlora.py",
            "NLU/src/transformers/optimization.py",
            "NLU/src/transformers/trainer.py",
            "NLU/scripts/rank=8/run_cola.sh",
        ],
        "command": (
            "PYTHONPATH=$EXTRA /work/main/.venv/bin/python tests/golden/increlora/generate.py "
            "$INCRELORA"
        ),
        "config": {
            "shapes_in_out": SHAPES,
            "lora_r": R,
            "target_rank": TARGET_RANK,
            "incre_rank_num": ADD_R,
            "top_h": TOP_H,
            "init_warmup": INIT_WARMUP,
            "incre_interval": INCRE_INTERVAL,
            "advance_learn": True,
            "beta1": 0.85,
            "beta2": 0.85,
            "lora_alpha": ALPHA,
            "reg_orth_coef": REG_ORTH,
            "steps": STEPS,
            "num_warmup_steps": WARMUP,
            "lr": LR,
            "new_group_weight_decay": GROUP_WD,
            "max_grad_norm": MAX_GRAD_NORM,
            "batch": BATCH,
            "seed": SEED,
        },
        "groups": {"sizes": group_sizes, "weight_decay": group_wd, "added_at_step": group_steps},
        "reserves_per_layer": [reserves[k] for k in range(n_layers)],
        "notes": (
            "lrs[step, g] is group g's lr as optimizer.step() ran at that step (NaN: no such "
            "group yet); a group added at step s carries the optimiser's default lr at step s "
            "(its tensors have no gradient there, so AdamW skips them) and Multi_LambdaLR's "
            "own schedule from step s + 1. Reserves are stored as created; the test puts the "
            "same values into peftbench's reserves."
        ),
    }
    (out / "fixture.json").write_text(json.dumps(meta, indent=2) + "\n")
    print("groups", group_steps, group_sizes, "final ranks", ranks[-1].tolist())
    print("lr", lrs[:, : len(optimizer.param_groups)])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else str(Path(__file__).parent))
