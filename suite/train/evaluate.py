"""Losses, predictions and scoring: the functions each task type names for its path.

Classification, multiple choice (scores per choice) and image classification predict the
arg-max of the model's outputs and train with cross-entropy; regression predicts the
single output and trains with MSE; generation trains on the answer tokens and predicts
by greedy decoding, compared by exact match on the decoded answer text
(suite/tasks/answers.py). Pretraining trains on the next-token loss of every position
and "predicts", per sequence, its summed negative log-likelihood with the count of
predicted tokens beside it as the gold value, which the perplexity metric pools over the
split. Every predictor also returns a score per example: the margin between the best and
second-best output for classes and choices (the log-likelihood gap for choices), the
predicted value for regression, the mean NLL per token for pretraining, and NaN for
generated text.

`evaluate_cell` is a cell's evaluate phase: the validation and test splits on fixed
batches, the test split's first forwards timed as they run (the unmerged latency the
measure phase reads), the task's majority baselines beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from suite.results import SplitPredictions
from suite.specs.task import TaskBase
from suite.tasks.answers import normalised_answer, predicted_answer
from suite.tasks.metrics import compute
from suite.tasks.types import task_type
from suite.train.batches import eval_batches, on_device
from suite.train.measure import LATENCY_BATCHES, ForwardTimer
from suite.train.precision import autocast_context

if TYPE_CHECKING:
    from suite.cells import Cell
    from suite.train.load import Setup


@dataclass(frozen=True)
class Predictions:
    """Per example, in the split's order: prediction, gold value, and a score."""

    pred: np.ndarray
    gold: np.ndarray
    score: np.ndarray


def cross_entropy(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return F.cross_entropy(model(**batch).float(), batch["labels"])


def mse(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return F.mse_loss(model(**batch).squeeze(-1).float(), batch["labels"])


def answer_nll(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean negative log-likelihood per answer token (the prompt is masked out)."""
    tokens = batch["target_mask"][:, 1:].sum().clamp(min=1)
    return -model(**batch).sum() / tokens


def _next_token_nll(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """NLL of every token after the first, per position (batch x length - 1). No attention
    mask is passed: pretraining rows have no padding, and a causal model without one takes
    its fused causal-attention path."""
    logits = model.backbone(input_ids=ids).logits[:, :-1]
    targets = ids[:, 1:]
    nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    return nll.view(targets.shape)


def token_nll(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean next-token negative log-likelihood over the batch (causal LM pretraining)."""
    return _next_token_nll(model, batch["input_ids"]).mean()


def task_loss(task: TaskBase):
    """The training loss the task's type names."""
    return task_type(task).function("loss")


def _margin(out: torch.Tensor) -> torch.Tensor:
    if out.shape[-1] < 2:
        return torch.full(out.shape[:-1], float("nan"))
    top = out.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


@torch.inference_mode()
def predict_classes(model, batches: list[dict], task: TaskBase, tokenizer=None) -> Predictions:
    preds, gold, score = [], [], []
    for batch in batches:
        out = model(**batch).float()
        preds.append(out.argmax(dim=-1))
        score.append(_margin(out))
        gold.append(batch["labels"])
    return _stack(preds, gold, score)


# Multiple choice: the same arg-max over each example's choice log-likelihoods.
predict_choices = predict_classes


@torch.inference_mode()
def predict_values(model, batches: list[dict], task: TaskBase, tokenizer=None) -> Predictions:
    preds, gold = [], []
    for batch in batches:
        preds.append(model(**batch).float().squeeze(-1))
        gold.append(batch["labels"])
    return _stack(preds, gold, preds)


@torch.inference_mode()
def predict_token_nll(model, batches: list[dict], task: TaskBase, tokenizer=None) -> Predictions:
    """Per sequence: summed next-token NLL (pred), tokens predicted (gold), mean NLL (score),
    over the first `task.eval_sequences` sequences of the split (all when unset)."""
    sums, counts, left = [], [], task.eval_sequences
    for batch in batches:
        if left is not None and left <= 0:
            break
        ids = batch["input_ids"] if left is None else batch["input_ids"][:left]
        left = None if left is None else left - len(ids)
        nll = _next_token_nll(model, ids).double()
        sums.append(nll.sum(dim=1))
        counts.append(torch.full((nll.shape[0],), float(nll.shape[1]), dtype=torch.float64))
    pred, gold = torch.cat(sums).cpu().numpy(), torch.cat(counts).cpu().numpy()
    return Predictions(pred, gold, pred / gold)


def _stack(preds, gold, score) -> Predictions:
    return Predictions(*(torch.cat(x).cpu().numpy() for x in (preds, gold, score)))


def _objects(rows: list) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out


def _until(row: list[int], eos: int) -> tuple[int, ...]:
    return tuple(row[: row.index(eos)] if eos in row else row)


@torch.inference_mode()
def generate_answers(model, batches: list[dict], task: TaskBase, tokenizer) -> Predictions:
    """Greedy continuations of the prompts (up to max_new_tokens or EOS) and the gold
    answers, both as answer text (suite/tasks/answers.py)."""
    if tokenizer is None:
        raise ValueError(f"generation task '{task.name}' is scored on text: pass the tokenizer")

    def decode(ids) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

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
    return Predictions(_objects(preds), _objects(gold), np.full(len(preds), np.nan))


def _plain(value):
    if value is None:
        return None
    if isinstance(value, str):
        return value
    number = float(value)
    return None if number != number else number  # NaN: no value


def split_predictions(found: Predictions):
    """Predictions as the row stores them (lists of numbers, strings or None)."""
    return SplitPredictions(
        pred=[_plain(v) for v in found.pred.tolist()],
        gold=[_plain(v) for v in found.gold.tolist()],
        score=[_plain(v) for v in found.score.tolist()],
    )


def predict(model, batches: list[dict], task: TaskBase, tokenizer=None) -> Predictions:
    """The task type's predictions on fixed batches (generation decodes with `tokenizer`)."""
    return task_type(task).function("predictor")(model, batches, task, tokenizer)


def score(task: TaskBase, predictions: Predictions) -> dict[str, float]:
    """The task's metrics on predictions."""
    return compute([m.name for m in task.metrics], predictions.pred, predictions.gold)


def evaluate(model, batches: list[dict], task: TaskBase, tokenizer=None) -> dict[str, float]:
    """The task's metrics on `batches`."""
    return score(task, predict(model, batches, task, tokenizer))


def evaluate_cell(cell: Cell, setup: Setup, model: torch.nn.Module) -> dict[str, Any]:
    """Validation and test metrics and per-example predictions on fixed batches.

    A tuning trial's test results are kept apart (split "trial_test"): selection reads
    only validation, so they cannot steer it; the tuning-budget curves use them."""
    model.eval()
    eval_sets = {
        s: on_device(
            eval_batches(setup.encoded[s], cell.task.eval_batch_size, setup.pad, setup.collate),
            setup.device,
        )
        for s in ("validation", "test")
    }
    # The test split's first forwards are timed as they run: the unmerged latency.
    timer = ForwardTimer(model, setup.device, LATENCY_BATCHES)
    with autocast_context(setup.device, cell.budget.autocast):
        found = {
            "validation": setup.predict(model, eval_sets["validation"], cell.task, setup.tokenizer)
        }
        with timer:
            found["test"] = setup.predict(model, eval_sets["test"], cell.task, setup.tokenizer)
    val, test = (score(cell.task, found[s]) for s in ("validation", "test"))
    trial = cell.phase == "trial"
    test_split = "trial_test" if trial else "test"
    baselines = setup.baselines
    return {
        "val_metrics": val,
        "test_metrics": {} if trial else test,
        "trial_test_metrics": test if trial else {},
        "predictions": {
            "validation": split_predictions(found["validation"]),
            test_split: split_predictions(found["test"]),
        },
        "baseline_val": baselines.get("validation", {}),
        "baseline_test": baselines.get("test", {}),
        "eval_sets": eval_sets,
        "test_forwards": timer,
    }
