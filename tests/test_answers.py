"""Generation answers are scored on text, as lm-evaluation-harness scores GSM8K."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from suite.tasks.answers import normalised_answer, predicted_answer
from suite.tasks.types import TASK_ADAPTER, GenerationTask
from suite.train.evaluate import evaluate
from tests.helpers import catalog


def gsm8k() -> GenerationTask:
    return catalog().tasks.get("gsm8k").spec


def task(**over) -> GenerationTask:
    base = {
        "name": "t",
        "type": "generation",
        "data": {"loader": "files"},
        "text_fields": ["q"],
        "label_field": "a",
        "metrics": [{"name": "exact_match", "version": 2}],
        "primary_metric": "exact_match",
    }
    return TASK_ADAPTER.validate_python({**base, **over})


@pytest.mark.parametrize(
    ("generated", "answer"),
    [
        (" 42", "42"),
        (" 42\nQuestion: what is 6 x 7?\nAnswer: 42", "42"),  # cut at the stop strings
        (" 1,234.", "1234"),  # commas and a final period ignored
        (" $18 in total", "18"),  # first number; the dollar sign ignored
        (" -3", "-3"),
        (" The answer is 7", "7"),
        (" no number here", ""),
        ("\n42", ""),  # the first stop comes before any answer
    ],
)
def test_gsm8k_predicted_answers(generated, answer):
    assert predicted_answer(generated, gsm8k()) == answer


def test_gold_answers_lose_the_same_patterns():
    assert normalised_answer("1,234", gsm8k()) == "1234"
    assert normalised_answer(" 72 ", gsm8k()) == "72"


def test_defaults_stop_at_a_new_line_and_keep_the_text():
    plain = task()
    assert predicted_answer(" Paris\nBerlin", plain) == "Paris"
    assert predicted_answer("  Paris ", plain) == "Paris"
    assert predicted_answer("Paris, France", plain) == "Paris, France"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prediction_pattern", "(unclosed", "not a valid regular expression"),
        ("ignore_patterns", ["[a-"], "not a valid regular expression"),
        ("stop", ["\n", ""], "empty stop string"),
    ],
)
def test_bad_answer_options_are_spec_errors(field, value, message):
    with pytest.raises(ValidationError, match=message):
        task(**{field: value})


class ScriptedLM(torch.nn.Module):
    """A causal LM stand-in whose greedy continuation is fixed token ids (the scoring is
    what is under test here; the real runner path is tests/test_tasks_types.py)."""

    def __init__(self, continuations: list[list[int]]):
        super().__init__()
        self.backbone = self
        self.continuations = continuations

    def generate(self, input_ids, attention_mask, max_new_tokens, **_):
        width = max(len(c) for c in self.continuations)
        new = torch.full((len(input_ids), width), 0, dtype=torch.long)
        for i, c in enumerate(self.continuations):
            new[i, : len(c)] = torch.tensor(c)
        return torch.cat([input_ids, new], dim=1)


def test_evaluate_decodes_cuts_and_matches_text():
    vocab = {1: " 4", 2: "2", 3: "\n", 4: "Question", 5: " 1,0", 6: "00", 9: "<eos>"}

    class Tokenizer:
        @staticmethod
        def decode(ids, skip_special_tokens=False):
            return "".join(vocab[i] for i in ids if i != 9)

    decode = Tokenizer()

    # Gold " 42" and " 1000"; the model says "42\nQuestion" and "1,000" then EOS.
    model = ScriptedLM([[1, 2, 3, 4], [5, 6, 9, 4]])
    batch = {
        "prompt_ids": torch.tensor([[7, 7], [7, 7]]),
        "prompt_mask": torch.ones(2, 2, dtype=torch.long),
        "answer_ids": torch.tensor([[1, 2, -100], [5, 6, -100]]),
        "eos_id": torch.tensor(9),
    }
    assert evaluate(model, [batch], gsm8k(), decode)["exact_match"] == 1.0
    batch["answer_ids"] = torch.tensor([[1, 2, -100], [1, -100, -100]])  # gold 42 and 4
    assert evaluate(model, [batch], gsm8k(), decode)["exact_match"] == 0.5
    with pytest.raises(ValueError, match="pass the tokenizer"):
        evaluate(model, [batch], gsm8k())
