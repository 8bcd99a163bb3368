"""Shared pieces of the typed specs."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def repeated(labels: list[str]) -> list[str]:
    """The labels that occur more than once, sorted (a spec's entries must differ)."""
    return sorted({x for x in labels if labels.count(x) > 1})


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            "expected a lower-case name of letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]


class Frozen(BaseModel):
    """Base of every spec: immutable, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Citation(Frozen):
    """Where a method (or task) comes from."""

    title: str
    arxiv: str | None = None
    url: str | None = None
    year: int | None = None

    def short(self) -> str:
        return f"{self.title} (arXiv:{self.arxiv})" if self.arxiv else self.title
