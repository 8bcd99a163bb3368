"""Forgetting: a causal LM's loss on reference texts before and after adaptation.

A matrix may declare `reference: {data_files, text_field, max_texts, max_length}` (local
CSV/TSV/JSON/Parquet, paths absolute or relative to the working directory; with
`package:`, paths inside that installed package). For every
causal-LM cell the runner measures the mean per-token loss on those texts with the base
model (before the method touches it) and again after training, as Hugging Face PEFT's
method comparison does; the row stores both and their difference (positive = forgot).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from suite.models.taskmodel import target_log_likelihood
from suite.specs.matrix import ReferenceSpec
from suite.specs.task import DataSpec
from suite.tasks.encoding import pad
from suite.tasks.loaders import load_files, load_package

BATCH = 8


@dataclass
class ReferenceProbe:
    """Fixed batches of the reference texts for one cell's tokenizer and device."""

    batches: list[dict]

    @classmethod
    def for_reference(
        cls, ref: ReferenceSpec | None, tokenizer, device: torch.device
    ) -> ReferenceProbe | None:
        """Batches of the matrix's reference texts (None when the cell has none)."""
        if ref is None:
            return None
        files = {"reference": ref.data_files}
        if ref.package:
            data = DataSpec(loader="package", options={"package": ref.package}, data_files=files)
            frame = load_package(data, Path.cwd())["reference"]
        else:
            frame = load_files(DataSpec(data_files=files), Path.cwd())["reference"]
        texts = frame[ref.text_field].dropna().astype(str).tolist()[: ref.max_texts]
        ids = [tokenizer(t, truncation=True, max_length=ref.max_length)["input_ids"] for t in texts]
        pad_id = tokenizer.pad_token_id or 0
        batches = []
        for i in range(0, len(ids), BATCH):
            rows = ids[i : i + BATCH]
            mask = pad([[1] * len(r) for r in rows], 0)
            batch = {"input_ids": pad(rows, pad_id), "attention_mask": mask, "target_mask": mask}
            batches.append({k: v.to(device) for k, v in batch.items()})
        return cls(batches)

    @torch.inference_mode()
    def loss(self, model: torch.nn.Module) -> float:
        """Mean negative log-likelihood per predicted token over every reference text."""
        total, tokens = 0.0, 0
        for batch in self.batches:
            total -= float(target_log_likelihood(model, batch).sum())
            tokens += int(batch["target_mask"][:, 1:].sum())
        return total / max(tokens, 1)

    def fields(self, before: float, model: torch.nn.Module) -> dict[str, float]:
        after = self.loss(model)
        return {
            "reference_loss_before": before,
            "reference_loss_after": after,
            "forgetting_delta_loss": after - before,
        }
