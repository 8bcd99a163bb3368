"""Per task type: examples -> an EncodedSplit, and examples of a split -> one batch.

Each task type's entry in suite/tasks/types.py names its encoder and collator here:

- classification, pair classification and regression: the tokenised text fields (one or
  two), padded to the longest row of each batch; labels are class ids or floats;

- image-classification: pixel arrays from the preset's PixelProcessor;
- multiple-choice: one sequence per (example, choice) = context + " " + choice, with a
  target mask on the choice's tokens; the causal LM's summed log-likelihood of those
  tokens is the choice's score (lm-evaluation-harness's `acc`). With `choice_blank` the
  choice fills the blank and the text after it is the scored part (partial scoring).
  When every choice is one token after a shared context (a classification dataset's
  " positive" / " negative"), one sequence per example, the prompt, with the choices'
  token ids beside it: the same scores from one forward pass (`shared_prompts`);
- generation: prompt + " " + answer + EOS for teacher-forced training (loss on the
  answer and EOS only, the prompt masked out), and the left-padded prompt plus the
  gold answer ids for greedy decoding and exact match;
- pretrain: the split's documents tokenised, joined with EOS into one stream, and cut
  into sequences of exactly max_length tokens (one int32 row each, no padding).

Every batch keeps `labels` (one entry per example) so the loop can count examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from suite.specs.task import TaskBase as TaskSpec


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids per example (unpadded) and labels; `extra` holds what the type's collator
    needs besides them (choice sequences, target masks, pixels)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def split_examples(split: EncodedSplit, idx: np.ndarray) -> EncodedSplit:
    """The examples `idx` of a split, as a split of their own (for hold-outs). Per-example
    lists in `extra` are taken likewise; other extras (an EOS id) are kept as they are."""
    idx = np.sort(np.asarray(idx))
    if "counts" in split.extra:  # choices: one sequence per (example, choice)
        raise ValueError("holding out multiple-choice examples is not supported")
    take = lambda rows: [rows[i] for i in idx]  # noqa: E731
    extra = {
        k: (v[idx] if isinstance(v, np.ndarray) else take(v) if isinstance(v, list) else v)
        for k, v in split.extra.items()
    }
    types = take(split.token_type_ids) if split.token_type_ids is not None else None
    ids = take(split.input_ids) if split.input_ids else []
    return EncodedSplit(ids, types, split.labels[idx], extra)


def encode_text(task: TaskSpec, frame: pd.DataFrame, tokenizer) -> EncodedSplit:
    texts = [frame[f].astype(str).tolist() for f in task.text_fields]
    enc = tokenizer(*texts, truncation=True, max_length=task.max_length)
    return EncodedSplit(enc["input_ids"], enc.get("token_type_ids"), frame["label"].to_numpy())


def _collate_text(split: EncodedSplit, idx: np.ndarray, pad_id: int, dtype) -> dict:
    rows = [split.input_ids[i] for i in idx]
    batch = {"input_ids": pad(rows, pad_id), "attention_mask": pad([[1] * len(r) for r in rows], 0)}
    if split.token_type_ids is not None:
        batch["token_type_ids"] = pad([split.token_type_ids[i] for i in idx], 0)
    batch["labels"] = torch.tensor(split.labels[idx], dtype=dtype)
    return batch


def collate_text_classes(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict:
    return _collate_text(split, idx, pad_id, torch.long)


def collate_text_values(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict:
    return _collate_text(split, idx, pad_id, torch.float32)


def contexts(task: TaskSpec, frame: pd.DataFrame) -> list[str]:
    """The prompt of each example: `prompt_template` formatted with the row, or its
    text fields joined by newlines."""
    if task.prompt_template:
        return [task.prompt_template.format(**row) for row in frame.to_dict("records")]
    return ["\n".join(str(row[f]) for f in task.text_fields) for row in frame.to_dict("records")]


def encode_images(task: TaskSpec, frame: pd.DataFrame, processor) -> EncodedSplit:
    pixels = processor(list(frame[task.image_field]))
    return EncodedSplit([], None, frame["label"].to_numpy(), extra={"pixels": pixels})


def _eos(tokenizer) -> int:
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ValueError("the tokenizer has neither an EOS nor a SEP token to end answers with")
    return int(eos)


def _join(context: list[int], target: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """context + target, cut from the left to max_length; mask 1 on the target tokens kept."""
    ids = (context + target)[-max_length:]
    n = min(len(target), len(ids) - 1)  # keep at least one token to predict from
    return ids, [0] * (len(ids) - n) + [1] * n


def encode_choices(task: TaskSpec, frame: pd.DataFrame, tokenizer) -> EncodedSplit:
    """One sequence per (example, choice); examples may have different numbers of choices.
    When every choice of every example is one token after the example's one context, the
    shared-prompt form instead (`shared_prompts`): the same scores from one sequence per
    example."""
    examples = []
    for context, choices in zip(contexts(task, frame), frame["choices"], strict=True):
        ids: dict[str, list[int]] = {}  # an example's choices usually share one context
        examples.append([
            (ids.setdefault(prefix, tokenizer(prefix)["input_ids"]),
             tokenizer(scored, add_special_tokens=False)["input_ids"])
            for prefix, scored in choice_texts(task, context, [str(c) for c in choices])
        ])  # fmt: skip
    labels = frame["label"].to_numpy()
    shared = shared_prompts(examples, task.max_length)
    if shared is not None:
        return EncodedSplit(shared[0], None, labels, extra={"choice_tokens": shared[1]})
    seqs, masks = [], []
    for pairs in examples:
        for ctx, cont in pairs:
            ids, mask = _join(ctx, cont, task.max_length)
            seqs.append(ids)
            masks.append(mask)
    counts = [len(pairs) for pairs in examples]
    extra = {"target_mask": masks, "counts": counts, "offsets": np.cumsum([0, *counts])[:-1]}
    return EncodedSplit(seqs, None, labels, extra=extra)


def shared_prompts(
    examples: list[list[tuple[list[int], list[int]]]], max_length: int
) -> tuple[list[list[int]], list[list[int]]] | None:
    """(prompt per example, its choices' token ids) when every choice is one token after
    its example's one context (the harness's " positive" / " negative"), else None.

    Then a choice's log-likelihood is the log-softmax at the prompt's last position read
    at the choice's token: one forward pass per example instead of one per choice, and
    the LM head is needed at one position only. The prompt is the context cut as `_join`
    cuts it, so the scores are the per-choice path's."""
    if max_length < 2:
        return None
    prompts, tokens = [], []
    for pairs in examples:
        ctx = pairs[0][0]
        if not ctx or any(c != ctx or len(cont) != 1 for c, cont in pairs):
            return None
        prompts.append(ctx[-(max_length - 1) :])
        tokens.append([cont[0] for _, cont in pairs])
    return prompts, tokens


def choice_texts(task: TaskSpec, context: str, choices: list[str]) -> list[tuple[str, str]]:
    """(context, scored continuation) per choice. By default the choice is the
    continuation of the context; with `choice_blank` (partial scoring, as
    lm-evaluation-harness scores WinoGrande) the choice fills the blank and the text after
    the blank is the continuation every choice is scored on."""
    if task.choice_blank is None:
        return [(context, " " + choice) for choice in choices]
    if task.choice_blank not in context:
        raise ValueError(f"task '{task.name}': no {task.choice_blank!r} in the context {context!r}")
    before, after = context.split(task.choice_blank, 1)
    return [(before + choice, " " + after.strip()) for choice in choices]


def encode_generation(task: TaskSpec, frame: pd.DataFrame, tokenizer) -> EncodedSplit:
    eos = _eos(tokenizer)
    seqs, masks, prompts, answers = [], [], [], []
    for context, answer in zip(contexts(task, frame), frame["label"], strict=True):
        prompt = tokenizer(context)["input_ids"][-task.max_length :]
        gold = tokenizer(" " + str(answer), add_special_tokens=False)["input_ids"]
        ids, mask = _join(prompt, [*gold, eos], task.max_length)
        seqs.append(ids)
        masks.append(mask)
        prompts.append(prompt)
        answers.append(gold)
    extra = {"target_mask": masks, "prompts": prompts, "answers": answers, "eos": eos}
    labels = np.arange(len(frame))  # examples are told apart by index; the gold is `answers`
    return EncodedSplit(seqs, None, labels, extra=extra)


def pad(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), max(width, 1)), value, dtype=torch.long)
    for j, r in enumerate(rows):
        if not r:
            continue
        if left:
            out[j, width - len(r) :] = torch.tensor(r)
        else:
            out[j, : len(r)] = torch.tensor(r)
    return out


def _sequences(rows: list[list[int]], masks: list[list[int]], pad_id: int) -> dict:
    return {
        "input_ids": pad(rows, pad_id),
        "attention_mask": pad([[1] * len(r) for r in rows], 0),
        "target_mask": pad(masks, 0),
    }


def collate_images(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict:
    return {
        "pixel_values": torch.from_numpy(split.extra["pixels"][idx]),
        "labels": torch.tensor(split.labels[idx], dtype=torch.long),
    }


def collate_choices(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict:
    if "choice_tokens" in split.extra:  # shared-prompt form: one sequence per example
        rows = [split.input_ids[i] for i in idx]
        tokens = [split.extra["choice_tokens"][i] for i in idx]
        batch = {
            "input_ids": pad(rows, pad_id),
            "attention_mask": pad([[1] * len(r) for r in rows], 0),
            "choice_tokens": pad(tokens, 0),
        }
    else:
        counts, offsets = split.extra["counts"], split.extra["offsets"]
        seq = [int(offsets[i]) + c for i in idx for c in range(counts[i])]
        batch = _sequences(
            [split.input_ids[s] for s in seq], [split.extra["target_mask"][s] for s in seq], pad_id
        )
    batch["choice_counts"] = torch.tensor([_choice_count(split, i) for i in idx])
    batch["labels"] = torch.tensor(split.labels[idx], dtype=torch.long)
    return batch


def _choice_count(split: EncodedSplit, i: int) -> int:
    if "choice_tokens" in split.extra:
        return len(split.extra["choice_tokens"][i])
    return int(split.extra["counts"][i])


def collate_lm(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict:
    extra = split.extra
    batch = _sequences(
        [split.input_ids[i] for i in idx], [extra["target_mask"][i] for i in idx], pad_id
    )
    prompts = [extra["prompts"][i] for i in idx]
    batch["prompt_ids"] = pad(prompts, pad_id, left=True)
    batch["prompt_mask"] = pad([[1] * len(p) for p in prompts], 0, left=True)
    batch["answer_ids"] = pad([extra["answers"][i] for i in idx], -100)
    batch["eos_id"] = torch.tensor(extra["eos"])
    batch["labels"] = torch.tensor(split.labels[idx], dtype=torch.long)
    return batch


def encode_stream(task: TaskSpec, frame: pd.DataFrame, tokenizer) -> EncodedSplit:
    """The documents as one token stream (EOS between documents, none added inside),
    cut into rows of `max_length` tokens; the last partial row is dropped. Rows are the
    examples: the stream's order is kept, and `labels` numbers them."""
    eos = _eos(tokenizer)
    texts = frame[task.text_fields[0]].astype(str).tolist()
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
    stream = np.fromiter(
        (t for doc in ids for t in (*doc, eos)), dtype=np.int32, count=sum(len(d) + 1 for d in ids)
    )
    rows = len(stream) // task.max_length
    tokens = stream[: rows * task.max_length].reshape(rows, task.max_length)
    return EncodedSplit([], None, np.arange(rows), extra={"tokens": tokens})


def collate_stream(split: EncodedSplit, idx: np.ndarray, pad_id: int) -> dict:
    """Rows of the stream as a batch: every position is a real token, every token after
    the first is a target (`target_mask`, as the causal-LM head reads it)."""
    ids = torch.from_numpy(split.extra["tokens"][idx].astype(np.int64))
    ones = torch.ones_like(ids)
    return {
        "input_ids": ids,
        "attention_mask": ones,
        "target_mask": ones,
        "labels": torch.as_tensor(split.labels[idx], dtype=torch.long),
    }
