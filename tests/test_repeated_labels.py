"""A matrix's method entries and a post-hoc stage's entries must carry distinct labels
(one rule, suite/specs/base.py `repeated`); the message names the repeats."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from suite.specs.base import repeated
from suite.specs.matrix import MatrixSpec
from suite.specs.posthoc import PosthocStageSpec


def test_repeated_lists_each_repeat_once_sorted():
    assert repeated(["b", "a", "b", "c", "a", "b"]) == ["a", "b"]
    assert repeated(["a", "b"]) == []


def test_a_matrix_and_a_stage_refuse_repeated_labels():
    with pytest.raises(ValidationError, match=r"method labels repeat: \['lora'\]"):
        MatrixSpec(name="m", models=["tiny-bert"], methods=["lora", "lora"], tasks=["t"], seeds=[0])
    with pytest.raises(ValidationError, match=r"method labels repeat in stage 'm': \['ties'\]"):
        PosthocStageSpec(
            name="m", stage="merge", inputs={"method": "lora"}, methods=["ties", "ties"]
        )
