"""Answer text for generation tasks, as lm-evaluation-harness scores it.

The greedy continuation is decoded, cut at the first stop string (`stop`, harness
`until`), reduced to the answer by `prediction_pattern` (a regex whose first group, or
whole match, is the answer: the harness's answer filter), and both it and the gold
answer lose every match of `ignore_patterns` (harness `regexes_to_ignore`) and outer
whitespace before exact match compares them.
"""

from __future__ import annotations

import re
from typing import Protocol


class TaskSpec(Protocol):
    """What answer extraction reads of a generation task (suite/tasks/types.py's
    GenerationTask), named here so that this module needs nothing from types.py, which
    calls it."""

    @property
    def stop_strings(self) -> list[str]: ...

    @property
    def prediction_pattern(self) -> str | None: ...

    @property
    def ignore_patterns(self) -> list[str] | None: ...


def predicted_answer(text: str, task: TaskSpec) -> str:
    for stop in task.stop_strings:
        text = text.split(stop, 1)[0]
    if task.prediction_pattern:
        found = re.search(task.prediction_pattern, text)
        text = (found.group(1) if found.groups() else found.group(0)) if found else ""
    return normalised_answer(text, task)


def normalised_answer(text: str, task: TaskSpec) -> str:
    for pattern in task.ignore_patterns or []:
        text = re.sub(pattern, "", text)
    return text.strip()
