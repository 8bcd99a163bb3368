"""Evaluation on fixed batches, and the task loss, per task type.

Classification, multiple choice (scores per choice) and image classification predict the
arg-max of the model's outputs and train with cross-entropy; regression predicts the
single output and trains with MSE; generation trains on the answer tokens and predicts
by greedy decoding, compared by exact match on the decoded answer text
(suite/tasks/answers.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from suite.specs.task import TaskSpec
from suite.tasks.answers import normalised_answer, predicted_answer
from suite.tasks.metrics import compute

Loss = Callable[[torch.nn.Module, dict], torch.Tensor]
Decode = Callable[[list[int]], str]  # token ids -> text (the tokenizer's decode)


def _cross_entropy(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return F.cross_entropy(model(**batch).float(), batch["labels"])


def _mse(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return F.mse_loss(model(**batch).squeeze(-1).float(), batch["labels"])


def _answer_nll(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean negative log-likelihood per answer token (the prompt is masked out)."""
    tokens = batch["target_mask"][:, 1:].sum().clamp(min=1)
    return -model(**batch).sum() / tokens


LOSSES: dict[str, Loss] = {"regression": _mse, "generation": _answer_nll}


def task_loss(task: TaskSpec | bool) -> Loss:
    """The loss for a task (or, as older callers pass, whether it is a regression)."""
    if isinstance(task, bool):
        return _mse if task else _cross_entropy
    return LOSSES.get(task.type, _cross_entropy)


@torch.inference_mode()
def predict(
    model: torch.nn.Module, batches: list[dict], regression: bool
) -> tuple[np.ndarray, np.ndarray]:
    preds, gold = [], []
    for batch in batches:
        out = model(**batch).float()
        preds.append(out.squeeze(-1) if regression else out.argmax(dim=-1))
        gold.append(batch["labels"])
    return torch.cat(preds).cpu().numpy(), torch.cat(gold).cpu().numpy()


def _objects(rows: list) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out


def _until(row: list[int], eos: int) -> tuple[int, ...]:
    return tuple(row[: row.index(eos)] if eos in row else row)


@torch.inference_mode()
def generate(model: torch.nn.Module, batches: list[dict], task: TaskSpec, decode: Decode):
    """Greedy continuations of the prompts (up to max_new_tokens or EOS) and the gold
    answers, both as answer text (suite/tasks/answers.py)."""
    preds, gold = [], []
    for batch in batches:
        eos = int(batch["eos_id"])
        prompt = batch["prompt_ids"]
        out = model.backbone.generate(
            input_ids=prompt,
            attention_mask=batch["prompt_mask"],
            max_new_tokens=task.max_new_tokens,
            do_sample=False,
            pad_token_id=eos,
            eos_token_id=eos,
        )
        rows = out[:, prompt.shape[1] :].tolist()
        preds += [predicted_answer(decode(_until(row, eos)), task) for row in rows]
        answers = batch["answer_ids"].tolist()
        gold += [normalised_answer(decode([t for t in row if t != -100]), task) for row in answers]
    return _objects(preds), _objects(gold)


def evaluate(
    model: torch.nn.Module, batches: list[dict], task: TaskSpec, decode: Decode | None = None
) -> dict[str, float]:
    """The task's metrics on `batches`; generation tasks need the tokenizer's `decode`."""
    if task.type == "generation":
        if decode is None:
            raise ValueError(f"generation task '{task.name}' is scored on text: pass decode")
        pred, gold = generate(model, batches, task, decode)
    else:
        pred, gold = predict(model, batches, task.type == "regression")
    return compute([m.name for m in task.metrics], pred, gold)
