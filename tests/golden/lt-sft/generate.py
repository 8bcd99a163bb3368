"""Golden fixture for LT-SFT, produced by the authors' own code.

Repository: cambridgeltl/composable-sft, commit 29f7872d018555ee84fb9620ba7d69df426a7bdb.
Files run: src/sft/lt_sft.py (LotteryTicketSparseFineTuner: phase 1 full fine-tuning,
unfreeze_k_most_changed_params, reset to the pre-phase values, phase 2 masked), and
src/sft/trainer.py (SparseFineTuner: gradient masking in training_step), wrapped around
Hugging Face's Trainer, which builds a fresh optimiser and linear warmup + decay
schedule for each phase (lt_sft.py sets optimizer = lr_scheduler = None per phase).

Command (from the peftbench repository root), with a Python whose transformers is a 4.x
release the repository's Trainer overrides fit (4.30.2 was used, in a venv layered on
the project's):

    python tests/golden/lt-sft/generate.py /path/to/cambridgeltl-composable-sft

Nothing is stubbed. Two settings of the driver (not of the method): the train sampler
is sequential (the data order is then known: each phase reads the dataset from its
start), and optim="adamw_torch" (torch.optim.AdamW, the optimiser peftbench's loop uses;
the repository's 2022-era default was transformers' own AdamW, which differs only in
where eps enters). Transformers' integration with the installed (newer) peft is turned
off, as it cannot import it; LT-SFT does not use it.

The setting: a toy model (a: 24->16, b: 16->40, c: 40->16, head 16->3) whose target
weights a, b, c are maskable (their biases frozen, the head trained in full), 4 steps
of full fine-tuning then 4 of sparse fine-tuning, batch 4, lr 0.05, K = 10% of the
target weights, max_grad_norm 1.0 (the Trainer default), in two runs: warmup_ratio 0
(the repository's scripts) and 0.25. Stored: the lr of every step of both phases in
both runs; for the first run also the mask, the parameters after the reset, and the
parameters at the end.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
COMMIT = "29f7872d018555ee84fb9620ba7d69df426a7bdb"
CONFIG = {
    "shapes": {"a": [16, 24], "b": [40, 16], "c": [16, 40], "head": [3, 16]},
    "density": 0.1,
    "full_steps": 4,
    "sparse_steps": 4,
    "batch": 4,
    "lr": 0.05,
    "max_grad_norm": 1.0,
    "warmup_ratios": [0.0, 0.25],
    "seed": 0,
}
TARGETS = ("a", "b", "c")


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        for name in TARGETS:
            d_out, d_in = CONFIG["shapes"][name]
            setattr(self.backbone, name, nn.Linear(d_in, d_out))
        self.head = nn.Linear(16, 3)

    def forward(self, x, labels=None):
        b = self.backbone
        logits = self.head(b.c(torch.tanh(b.b(torch.tanh(b.a(x))))))
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def run(
    ref: Path, weights: dict, data: list[dict], warmup_ratio: float, out: dict, tag: str, full: bool
):
    import transformers.utils.import_utils as iu

    iu._peft_available = False  # the installed peft is too new for transformers 4.30
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    sys.path.insert(0, str(ref / "src"))
    from sft import LotteryTicketSparseFineTuner, SftArguments

    model = Toy()
    model.load_state_dict(weights)
    for name in TARGETS:
        getattr(model.backbone, name).bias.requires_grad_(False)
    maskable = [f"backbone.{n}.weight" for n in TARGETS]
    lrs = []

    class LrLog(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            lrs.append([g["lr"] for g in optimizer.param_groups])

    class Sequential(LotteryTicketSparseFineTuner(Trainer)):
        def _get_train_sampler(self):
            return SequentialSampler(self.train_dataset)

        def unfreeze_k_most_changed_params(self, k):
            super().unfreeze_k_most_changed_params(k)
            for n in maskable if full else []:
                out[f"{tag}.mask.{n}"] = self._mask[n].clone()

        def enable_masking(self):  # called right after the reset to the pre-phase values
            super().enable_masking()
            for n, p in self.model.named_parameters() if full else []:
                if p.requires_grad:
                    out[f"{tag}.reset.{n}"] = p.detach().clone()

    c = CONFIG
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=c["batch"],
            learning_rate=c["lr"],
            warmup_ratio=warmup_ratio,
            max_grad_norm=c["max_grad_norm"],
            optim="adamw_torch",
            lr_scheduler_type="linear",
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=c["seed"],
            no_cuda=True,
            dataloader_drop_last=False,
        )
        sft_args = SftArguments(
            ft_params_proportion=c["density"],
            full_ft_max_steps_per_iteration=c["full_steps"],
            sparse_ft_max_steps_per_iteration=c["sparse_steps"],
        )
        trainer = Sequential(
            model=model,
            args=args,
            train_dataset=data,
            sft_args=sft_args,
            maskable_params=maskable,
            callbacks=[LrLog()],
        )
        trainer.train()
    for n, p in model.named_parameters() if full else []:
        if p.requires_grad:
            out[f"{tag}.final.{n}"] = p.detach().clone()
    out[f"{tag}.lrs"] = torch.tensor(lrs)
    return trainer.n_tunable_params


def main(ref: Path) -> None:
    c = CONFIG
    torch.manual_seed(c["seed"])
    weights = {k: v.detach().clone() for k, v in Toy().state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    n = c["batch"] * max(c["full_steps"], c["sparse_steps"])
    xs = torch.randn(n, 24, generator=gen)
    ys = torch.randint(0, 3, (n,), generator=gen)
    data = [{"x": xs[i], "labels": ys[i]} for i in range(n)]
    out = {f"model.{k}": v for k, v in weights.items()}
    out["xs"], out["ys"] = xs, ys
    ks = {}
    for i, ratio in enumerate(c["warmup_ratios"]):
        ks[f"run{i}"] = int(run(ref, weights, data, ratio, out, f"run{i}", full=i == 0))

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in out.items()}, str(HERE / "fixture.safetensors"))
    meta = {
        "repo": "cambridgeltl/composable-sft",
        "commit": COMMIT,
        "files": ["src/sft/lt_sft.py", "src/sft/trainer.py", "src/sft/sft_args.py"],
        "command": (
            "python tests/golden/lt-sft/generate.py <composable-sft checkout>  "
            "(transformers 4.30.2)"
        ),
        "config": CONFIG,
        "k": ks,
        "notes": (
            "Hugging Face Trainer 4.30.2 drives both phases (sequential sampler; each "
            "phase reads the data from its start; optim adamw_torch). lrs[step] is the lr "
            "of each step, read at on_step_begin; the Trainer's linear schedule is "
            "step / warmup during warmup (0 at a phase's first step) and "
            "(T - step) / (T - warmup) after it, with warmup = ceil(ratio * T) per phase. "
            "The mask is |theta1 - theta0| >= the K-th largest over all maskable weights "
            "(np.partition); every parameter is reset to its value before phase 1."
        ),
    }
    (HERE / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
