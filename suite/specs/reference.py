"""Reference numbers reported in papers: `suite/references/<name>.yaml`.

They are not measured here. The store loads them into `reference_results` (marked
`measured = false`), so the leaderboard can show them beside measured rows without
ever mixing them into a rank: each row cites its paper and table, on the paper's own
data set, model and token budget.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from suite.specs.base import Frozen, Name


class ReferenceRow(Frozen):
    """One number as the paper's table prints it."""

    method: str  # the paper's name for the method
    method_key: Name | None = None  # the peftbench method it corresponds to, if any
    model: str  # the paper's model, e.g. "LLaMA 60M"
    tokens: PositiveInt  # training tokens
    value: float


class ReferenceSource(Frozen):
    """One table of one paper, and where its text was read."""

    paper: str
    arxiv: str
    table: str
    read_from: str
    note: str = ""
    rows: list[ReferenceRow] = Field(min_length=1)


class ReferenceFile(Frozen):
    """Reported numbers of one kind (task type, data set, metric)."""

    name: Name
    description: str = ""
    task_type: str
    dataset: str
    metric: str
    higher_is_better: bool
    sources: list[ReferenceSource] = Field(min_length=1)
