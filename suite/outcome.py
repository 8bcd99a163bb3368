"""How one cell's run ended, whatever its kind: its status, its error (cut to whole lines),
when it started and its wall time. Every runner's result type extends `Outcome`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, field_validator

# input_missing: a post-hoc cell whose input cell is not stored ok, or saved no artifact;
# input_invalid: one whose input artifact fails its checksum. Neither ever retrains.
Status = Literal[
    "ok", "failed", "nan", "oom", "timeout", "crashed", "input_missing", "input_invalid"
]


# The most characters of a cell's error a row keeps (the runner keeps as many).
ERROR_CHARS = 4000
CUT_MARK = "[... earlier lines cut]\n"


def error_tail(text: str | None, limit: int = ERROR_CHARS) -> str | None:
    """The last whole lines of `text` within `limit` characters: a traceback's end (the
    exception) says what went wrong. A text of `limit` characters or more was cut (the
    runner keeps a traceback's last ERROR_CHARS), so its first, partial line is dropped."""
    if text is None or len(text) < limit:
        return text
    if text.startswith(CUT_MARK) and len(text) - len(CUT_MARK) <= limit:
        return text  # cut here already
    tail = text[-limit:]
    newline = tail.find("\n")
    # One line longer than the limit keeps its end.
    return CUT_MARK + (tail[newline + 1 :] if 0 <= newline < len(tail) - 1 else tail)


def _whole_lines(text: str | None) -> str | None:
    """`error_tail` at its default limit, as a pydantic validator takes it (one argument)."""
    return error_tail(text)


class Outcome(BaseModel):
    """How one cell's run ended, whatever its kind: the part every runner returns."""

    status: Status
    error: str | None = None
    # A stored error is cut at a line boundary, never mid-word.
    _cut_error = field_validator("error")(_whole_lines)
    started_at: str | None = None
    cell_wall_s: float | None = None
