"""The task-type registry: one entry per type decides its whole path, and no other module
branches on a type's name."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from suite.tasks.types import TASK_TYPES, TASK_TYPES_LIST, TaskSpec, make_task

SUITE = Path(__file__).resolve().parents[1] / "suite"


@pytest.mark.parametrize("name", sorted(TASK_TYPES))
def test_every_entry_resolves_its_whole_path(name):
    entry = TASK_TYPES[name]
    for role in ("encoder", "collator", "loss", "predictor"):
        assert callable(entry.function(role)), (name, role)
    literal = typing.get_args(entry.spec.model_fields["type"].annotation)
    assert name in literal and set(literal) == set(entry.names)
    assert entry.architectures and entry.label_kind in ("class", "float", "index", "text")


def test_the_union_holds_every_registered_spec_model():
    members = {a.__origin__ for a in typing.get_args(typing.get_args(TaskSpec)[0])}
    assert members == {t.spec for t in TASK_TYPES_LIST}


def test_type_picks_the_spec_model_and_defaults_to_classification():
    base = {"name": "t", "data": {"loader": "files"}, "label_field": "y",
            "metrics": [{"name": "accuracy"}], "primary_metric": "accuracy"}  # fmt: skip
    assert make_task(**base, text_fields=["x"]).type == "classification"
    image = make_task(**base, type="image-classification", image_field="img")
    assert type(image) is TASK_TYPES["image-classification"].spec
    with pytest.raises(ValueError, match="unknown task type"):
        make_task(**base, type="ranking", text_fields=["x"])
    with pytest.raises(ValueError, match="do not take max_new_tokens"):
        make_task(**base, text_fields=["x"], max_new_tokens=4)


def test_no_module_but_the_registry_branches_on_a_task_types_name():
    names = "|".join(re.escape(n) for n in TASK_TYPES)
    pattern = re.compile(rf"""(\.type\s*(==|!=|in)\s*|==\s*)["'({{]+({names})["']""")
    offenders = [
        f"{path.relative_to(SUITE)}:{i}"
        for path in SUITE.rglob("*.py")
        if path.name != "types.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders
