"""One-token answer choices after a shared prompt are scored from one forward pass of the
prompt (suite/tasks/encoding.py: shared_prompts); the scores, the loss and its gradients
must be the per-choice path's. Multi-token choices keep the per-choice path.

A tiny random-weight Llama and a word-level tokenizer: no files, a second or two."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from torch import nn

from suite.models.taskmodel import TaskModel
from suite.tasks import encoding
from suite.tasks.encoding import collate_choices, encode_choices, split_examples
from suite.tasks.types import make_task

TEXTS = ["a fine film", "dull and long and slow and flat", "fun", "not good at all sadly"]


class WordTokenizer:
    """One id per whitespace-separated word; a BOS id (1) first unless told not to."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        ids = [self.vocab.setdefault(w, 2 + len(self.vocab)) for w in text.split()]
        assert max(ids, default=0) < 64, "the tiny model's vocabulary has 64 ids"
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def _task(choices: list[str], max_length: int = 96):
    return make_task(
        name="sent", type="multiple-choice", data={"loader": "files"}, text_fields=["text"],
        label_field="label",
        answer_choices=choices, prompt_template="{text}\nQuestion: positive or negative?\nAnswer:",
        max_length=max_length, metrics=[{"name": "accuracy"}], primary_metric="accuracy",
    )  # fmt: skip


def _frame(choices: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": TEXTS, "choices": [choices] * len(TEXTS), "label": [0, 1, 0, 1]})


def _model() -> TaskModel:
    config = tf.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    return TaskModel(tf.LlamaForCausalLM(config).eval(), 2, "last", 0)


def _encode(task, choices, shared: bool, monkeypatch=None):
    tokenizer = WordTokenizer()
    if not shared:
        monkeypatch.setattr(encoding, "shared_prompts", lambda *a: None)
    split = encode_choices(task, _frame(choices), tokenizer)
    if not shared:
        monkeypatch.undo()
    return split


def _scores(model: TaskModel, split) -> torch.Tensor:
    return model(**collate_choices(split, np.arange(len(split)), 0))


def _reference(model: TaskModel, task, choices: list[str]) -> torch.Tensor:
    """Each prompt + choice alone (no padding), its choice tokens' summed log-softmax
    over the whole vocabulary: what either path must equal."""
    tokenizer, out = WordTokenizer(), []
    for context in encoding.contexts(task, _frame(choices)):
        row = []
        for choice in choices:
            ctx = tokenizer(context)["input_ids"]
            cont = tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([(ctx + cont)[-task.max_length :]])
            logp = F.log_softmax(model.backbone(input_ids=ids).logits[0, :-1].float(), -1)
            n = len(cont)
            row.append(logp[-n:].gather(-1, ids[0, -n:, None]).sum())
        out.append(torch.stack(row))
    return torch.stack(out)


@pytest.mark.parametrize("max_length", [96, 6])  # 6 cuts every context from the left
def test_one_token_choices_score_from_the_prompt_as_the_per_choice_path(monkeypatch, max_length):
    task, choices, model = (
        _task(["positive", "negative"], max_length),
        ["positive", "negative"],
        _model(),
    )
    fast = _encode(task, choices, shared=True)
    general = _encode(task, choices, shared=False, monkeypatch=monkeypatch)
    assert "choice_tokens" in fast.extra and len(fast.input_ids) == len(TEXTS)
    assert "target_mask" in general.extra and len(general.input_ids) == 2 * len(TEXTS)
    with torch.no_grad():
        quick, slow = _scores(model, fast), _scores(model, general)
        reference = _reference(model, task, choices)
    torch.testing.assert_close(quick, slow, atol=1e-5, rtol=0)
    torch.testing.assert_close(quick, reference, atol=1e-5, rtol=0)


def test_the_training_loss_and_its_gradients_are_the_per_choice_paths(monkeypatch):
    task, choices = _task(["positive", "negative"]), ["positive", "negative"]
    grads = []
    for shared in (True, False):
        model = _model()
        split = _encode(task, choices, shared=shared, monkeypatch=monkeypatch)
        batch = collate_choices(split, np.arange(len(split)), 0)
        F.cross_entropy(model(**batch), batch["labels"]).backward()
        grads.append(model.backbone.model.layers[0].self_attn.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-4)


class _NoKeep(nn.Module):
    """A causal LM whose forward does not take logits_to_keep (the head runs everywhere)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids=None, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_a_backbone_without_logits_to_keep_gives_the_same_scores():
    task, choices, model = _task(["positive", "negative"]), ["positive", "negative"], _model()
    split = _encode(task, choices, shared=True)
    with torch.no_grad():
        kept = _scores(model, split)
        model.backbone = _NoKeep(model.backbone)
        torch.testing.assert_close(_scores(model, split), kept, atol=1e-5, rtol=0)


def test_multi_token_choices_take_the_per_choice_path():
    choices = ["very positive", "negative"]  # " very positive" is two tokens
    task, model = _task(choices), _model()
    split = _encode(task, choices, shared=True)
    assert "choice_tokens" not in split.extra
    assert split.extra["counts"] == [2] * len(TEXTS) and len(split.input_ids) == 2 * len(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(
            _scores(model, split), _reference(model, task, choices), atol=1e-5, rtol=0
        )


def test_shared_prompt_examples_can_be_held_out():
    task = _task(["positive", "negative"])
    split = _encode(task, ["positive", "negative"], shared=True)
    part = split_examples(split, np.array([3, 1]))
    assert part.input_ids == [split.input_ids[1], split.input_ids[3]]
    assert part.extra["choice_tokens"] == [split.extra["choice_tokens"][i] for i in (1, 3)]
