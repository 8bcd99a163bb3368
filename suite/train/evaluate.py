"""Evaluation on fixed batches, and the task loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from suite.specs.task import TaskSpec
from suite.tasks.metrics import compute


def task_loss(regression: bool):
    """Loss of a TaskModel on one batch: MSE for regression, cross-entropy otherwise."""

    def loss_fn(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        out = model(**batch)
        if regression:
            return F.mse_loss(out.squeeze(-1).float(), batch["labels"])
        return F.cross_entropy(out.float(), batch["labels"])

    return loss_fn


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


def evaluate(model: torch.nn.Module, batches: list[dict], task: TaskSpec) -> dict[str, float]:
    pred, gold = predict(model, batches, task.type == "regression")
    return compute([m.name for m in task.metrics], pred, gold)
