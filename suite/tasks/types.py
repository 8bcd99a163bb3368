"""Task types: one registry entry per type decides its whole path.

As lm-evaluation-harness's `output_type` does, a task's `type` selects, in one place:
the fields its YAML takes (its spec model), which model architectures can run it, what
its label column holds, how examples are encoded and batched, its training loss, and how
predictions are made and scored. `TaskSpec` is the union of the spec models, told apart
by `type` (classification when absent). Adding a task type is adding one `TaskType` to
`TASK_TYPES` (with its spec model beside it); nothing else branches on a type's name.

The pipeline functions are named as "module:attr" and imported when first used, so
parsing specs never imports torch.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)

from suite.specs.task import TaskBase, compile_pattern

ENCODING = "suite.tasks.encoding"
EVALUATE = "suite.train.evaluate"


class TextClassificationTask(TaskBase):
    """One or two text fields (a pair: premise and hypothesis), one class per example."""

    type: Literal["classification", "pair-classification"] = "classification"
    text_fields: list[str] = Field(min_length=1, max_length=2)
    labels: list[str] | None = None
    label_top_k: PositiveInt | None = None
    uses: ClassVar[frozenset[str]] = frozenset({"text_fields"})


class RegressionTask(TaskBase):
    """One or two text fields, a number per example."""

    type: Literal["regression"] = "regression"
    text_fields: list[str] = Field(min_length=1, max_length=2)
    uses: ClassVar[frozenset[str]] = frozenset({"text_fields"})


class MultipleChoiceTask(TaskBase):
    """The text fields (joined, or `prompt_template`) are the context; each choice (a list
    column `choices_field`, one column per choice in `choice_fields`, or the same
    `answer_choices` for every example) is scored by its log-likelihood under a causal
    LM; `label_field` holds the correct choice's index (or its name in `labels`: a letter,
    or a class of a classification dataset scored as the answer choice at its position).
    With `choice_blank` each choice fills the blank and the text after it is the scored
    part (partial scoring, as the harness scores WinoGrande).
    """

    type: Literal["multiple-choice"] = "multiple-choice"
    text_fields: list[str] = Field(min_length=1, max_length=4)
    choices_field: str | None = None
    # A classification dataset as multiple choice (the harness's SST-2: "negative",
    # "positive"): every example is scored on these continuations of its prompt.
    answer_choices: list[str] | None = Field(default=None, min_length=2)
    prompt_template: str | None = None
    choice_blank: str | None = Field(default=None, min_length=1)
    labels: list[str] | None = None
    uses: ClassVar[frozenset[str]] = frozenset({"text_fields", "choice_fields"})

    @model_validator(mode="after")
    def _one_choice_source(self) -> MultipleChoiceTask:
        sources = [bool(self.choices_field), bool(self.choice_fields), bool(self.answer_choices)]
        if sum(sources) != 1:
            raise ValueError(
                "a multiple-choice task needs one of choices_field, choice_fields, answer_choices"
            )
        if self.answer_choices and self.labels and len(self.labels) != len(self.answer_choices):
            raise ValueError(
                f"labels {self.labels} name the {len(self.answer_choices)} answer_choices "
                f"{self.answer_choices} in order: give as many"
            )
        return self

    @property
    def input_fields(self) -> list[str]:
        return [*self.text_fields, *self.choice_fields, *filter(None, [self.choices_field])]

    def prepare_frame(self, frame):
        """A `choices` list column (from a list column, a JSON list string, one column per
        choice, or `answer_choices`); ARC-style {"text": [...], "label": [...]} also keeps
        the labels."""
        frame = frame.copy()
        if self.answer_choices:
            if self.labels:  # rows of other classes dropped, as a classification task drops them
                keep = frame[self.label_field].astype(str).str.strip().isin(self.labels)
                frame = frame[keep].reset_index(drop=True)
            frame["choices"] = [list(self.answer_choices)] * len(frame)
            return frame
        if self.choice_fields:
            frame["choices"] = frame[self.choice_fields].astype(str).values.tolist()
            return frame
        values = [json.loads(v) if isinstance(v, str) else v for v in frame[self.choices_field]]
        if values and isinstance(values[0], dict):
            frame["choice_labels"] = [[str(x) for x in v["label"]] for v in values]
            values = [v["text"] for v in values]
        frame["choices"] = [[str(x) for x in v] for v in values]
        return frame

    def choice_index(self, value: Any, names: list[str] | None) -> int:
        """The correct choice's index: by the example's own choice labels, by `labels`
        (letter answers), or the value itself."""
        if names:
            return names.index(str(value).strip())
        if self.labels:
            return self.labels.index(str(value).strip())
        return int(value)


class GenerationTask(TaskBase):
    """The text fields prompt the model (`prompt_template` may format them); the greedy
    continuation (up to `max_new_tokens`, decoded, cut at the first of `stop`, reduced by
    `prediction_pattern`) is compared by exact match with `label_field` (after
    `answer_pattern`, a regex whose first group is the answer), both with every match of
    `ignore_patterns` removed (suite/tasks/answers.py)."""

    type: Literal["generation"] = "generation"
    text_fields: list[str] = Field(min_length=1, max_length=4)
    prompt_template: str | None = None
    answer_pattern: str | None = None
    # Unset options are None, not their effective defaults: the cell hash leaves None out,
    # so adding an option never changes the ids of cells that do not use it.
    stop: list[str] | None = None  # None: stop at a new line
    prediction_pattern: str | None = None
    ignore_patterns: list[str] | None = None
    uses: ClassVar[frozenset[str]] = frozenset({"text_fields", "max_new_tokens"})

    @field_validator("answer_pattern", "prediction_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        return compile_pattern(pattern)

    @field_validator("ignore_patterns")
    @classmethod
    def _all_compile(cls, patterns: list[str] | None) -> list[str] | None:
        for pattern in patterns or []:
            compile_pattern(pattern)
        return patterns

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stops: list[str] | None) -> list[str] | None:
        if stops is not None and any(s == "" for s in stops):
            raise ValueError("an empty stop string would cut every answer to nothing")
        return stops

    @property
    def stop_strings(self) -> list[str]:
        return ["\n"] if self.stop is None else self.stop

    def gold_answer(self, value: Any) -> str:
        """The gold answer as exact match sees it (after `answer_pattern`), so the majority
        baseline and the training target agree with the scorer."""
        from suite.tasks.answers import normalised_answer

        text = str(value)
        if self.answer_pattern:
            found = re.search(self.answer_pattern, text)
            text = (found.group(1) if found.groups() else found.group(0)) if found else ""
        return normalised_answer(text, self)


class PretrainTask(TaskBase):
    """Causal language modelling of a text corpus, for training a model from scratch.

    Each split's documents (the one text field) are tokenised, joined with the
    tokenizer's EOS (or SEP) token and cut into sequences of exactly `max_length` tokens
    (the remainder is dropped); every token after a sequence's first is predicted. The
    metric is perplexity, exp of the mean negative log-likelihood per predicted token
    over the split, on fixed validation and test slices. The text is its own target, so
    there is no trivial-predictor baseline (`baseline: none`).
    """

    type: Literal["pretrain"] = "pretrain"
    text_fields: list[str] = Field(min_length=1, max_length=1)
    baseline: Literal["none"] = "none"
    # Validation and test are scored on their first `eval_sequences` sequences (a fixed
    # slice of each split's stream); None: all of them.
    eval_sequences: PositiveInt | None = None
    uses: ClassVar[frozenset[str]] = frozenset({"text_fields"})

    def gold_answer(self, value: Any) -> str:
        """The text itself: a language model's target is its input, shifted by one."""
        return str(value)


class ImageClassificationTask(TaskBase):
    """An image per example (`image_field`), one class per example."""

    type: Literal["image-classification"] = "image-classification"
    image_field: str
    labels: list[str] | None = None
    label_top_k: PositiveInt | None = None

    @property
    def input_fields(self) -> list[str]:
        return [self.image_field]


@dataclass(frozen=True)
class TaskType:
    """Everything a task type decides; the functions are "module:attr" references."""

    spec: type[TaskBase]
    names: tuple[str, ...]
    # What the `label` column holds: a class id, a number, a choice index, answer text.
    label_kind: Literal["class", "float", "index", "text"]
    # Model architectures with a head and an encoding for it.
    architectures: tuple[str, ...]
    encoder: str  # (task, frame, tokenizer) -> EncodedSplit
    collator: str  # (split, indices, pad_id) -> batch
    loss: str  # (model, batch) -> scalar loss
    predictor: str  # (model, batches, task, decode) -> Predictions

    def function(self, role: str) -> Callable[..., Any]:
        return _import(getattr(self, role))


TASK_TYPES_LIST: tuple[TaskType, ...] = (
    TaskType(
        TextClassificationTask, ("classification", "pair-classification"), "class",
        ("encoder",), f"{ENCODING}:encode_text", f"{ENCODING}:collate_text_classes",
        f"{EVALUATE}:cross_entropy", f"{EVALUATE}:predict_classes",
    ),
    TaskType(
        RegressionTask, ("regression",), "float", ("encoder",), f"{ENCODING}:encode_text",
        f"{ENCODING}:collate_text_values", f"{EVALUATE}:mse", f"{EVALUATE}:predict_values",
    ),
    TaskType(
        MultipleChoiceTask, ("multiple-choice",), "index", ("causal-lm",),
        f"{ENCODING}:encode_choices", f"{ENCODING}:collate_choices",
        f"{EVALUATE}:cross_entropy", f"{EVALUATE}:predict_choices",
    ),
    TaskType(
        GenerationTask, ("generation",), "text", ("causal-lm",),
        f"{ENCODING}:encode_generation", f"{ENCODING}:collate_lm",
        f"{EVALUATE}:answer_nll", f"{EVALUATE}:generate_answers",
    ),
    TaskType(
        PretrainTask, ("pretrain",), "text", ("causal-lm",),
        f"{ENCODING}:encode_stream", f"{ENCODING}:collate_stream",
        f"{EVALUATE}:token_nll", f"{EVALUATE}:predict_token_nll",
    ),
    TaskType(
        ImageClassificationTask, ("image-classification",), "class", ("vision",),
        f"{ENCODING}:encode_images", f"{ENCODING}:collate_images",
        f"{EVALUATE}:cross_entropy", f"{EVALUATE}:predict_classes",
    ),
)  # fmt: skip
TASK_TYPES: dict[str, TaskType] = {name: t for t in TASK_TYPES_LIST for name in t.names}


def task_type(task: TaskBase) -> TaskType:
    return TASK_TYPES[task.type]  # type: ignore[attr-defined]


def _tag_of(value: Any) -> str | None:
    """The union member for a raw task (a dict from YAML) or a built one."""
    name = value.get("type", "classification") if isinstance(value, dict) else value.type
    t = TASK_TYPES.get(name) if isinstance(name, str) else None
    return t.spec.__name__ if t else None


# The union of every registered type's spec model, built from the registry so that a new
# type is one entry; `type` picks the member (classification when absent).
TaskSpec = Annotated[
    Union[tuple(Annotated[t.spec, Tag(t.spec.__name__)] for t in TASK_TYPES_LIST)],  # noqa: UP007
    Discriminator(
        _tag_of,
        custom_error_type="task_type",
        custom_error_message=f"unknown task type; choose one of {', '.join(TASK_TYPES)}",
    ),
]
TASK_ADAPTER: TypeAdapter = TypeAdapter(TaskSpec)


def make_task(**fields: Any) -> TaskBase:
    """A task spec from its fields (the type picked by `type`, as a task YAML is)."""
    return TASK_ADAPTER.validate_python(fields)


def spec_fields() -> list[str]:
    """Every field any task type takes (for did-you-mean on unknown keys)."""
    return sorted({f for t in TASK_TYPES_LIST for f in t.spec.model_fields})


def architectures_for(name: str) -> tuple[str, ...]:
    return TASK_TYPES[name].architectures


def types_run_by(architecture: str) -> list[str]:
    return [name for name, t in TASK_TYPES.items() if architecture in t.architectures]


@cache
def _import(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
