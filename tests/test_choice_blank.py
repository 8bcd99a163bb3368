"""Multiple choice with partial scoring (WinoGrande): the choice fills the blank and only
the text after the blank is scored, identically for every choice."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from suite.models.loading import load_tokenizer
from suite.tasks.encoding import choice_texts, encode_choices
from suite.tasks.types import TASK_ADAPTER, MultipleChoiceTask
from tests.helpers import catalog


def winogrande() -> MultipleChoiceTask:
    return catalog().tasks.get("winogrande").spec


SENTENCE = "Sarah was a much better surgeon than Maria so _ always got the harder cases."


def test_each_choice_fills_the_blank_and_the_rest_is_scored():
    pairs = choice_texts(winogrande(), SENTENCE, ["Sarah", "Maria"])
    assert pairs == [
        ("Sarah was a much better surgeon than Maria so Sarah", " always got the harder cases."),
        ("Sarah was a much better surgeon than Maria so Maria", " always got the harder cases."),
    ]


def test_without_a_blank_the_choice_is_the_continuation():
    arc = catalog().tasks.get("arc-easy").spec
    assert choice_texts(arc, "Q: why?", ["a", "b"]) == [("Q: why?", " a"), ("Q: why?", " b")]


def test_a_context_without_the_blank_names_the_task():
    with pytest.raises(ValueError, match="winogrande.*no '_'"):
        choice_texts(winogrande(), "no placeholder here", ["a", "b"])


def test_encoded_choices_score_the_same_tokens():
    tokenizer = load_tokenizer(catalog().models.get("tiny-llama").spec)
    frame = pd.DataFrame({"sentence": [SENTENCE], "choices": [["Sarah", "Maria"]], "label": [1]})
    split = encode_choices(winogrande(), frame, tokenizer)
    scored = [
        [t for t, m in zip(ids, mask, strict=True) if m]
        for ids, mask in zip(split.input_ids, split.extra["target_mask"], strict=True)
    ]
    expected = tokenizer(" always got the harder cases.", add_special_tokens=False)["input_ids"]
    assert scored == [expected, expected]
    assert split.input_ids[0] != split.input_ids[1]  # the contexts differ by the option


def test_choice_blank_is_for_multiple_choice_only():
    spec = catalog().tasks.get("gsm8k").spec.model_dump()
    with pytest.raises(ValidationError, match="choice_blank"):
        TASK_ADAPTER.validate_python({**spec, "choice_blank": "_"})
