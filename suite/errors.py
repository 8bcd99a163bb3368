"""Errors users see. A spec error always names the file, the line and the field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one spec file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpecError(Exception):
    """One or more problems in the YAML specs; the CLI exits with code 2 on it."""

    def __init__(self, issues: Iterable[SpecIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def single(cls, file: str, line: int | None, field: str, message: str) -> SpecError:
        return cls([SpecIssue(str(file), line, field, message)])


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return a "; did you mean 'x'?" suffix for the closest known name, or ''. A known
    name the unknown one extends at a word boundary comes first ('lora-r4-attn', a
    variant of 'lora', suggests 'lora', not the closer-spelled 'low-rank')."""
    known = sorted(known)
    stems = [k for k in known if name.startswith(k) and name[len(k) : len(k) + 1] in "-_."]
    close = [max(stems, key=len)] if stems else difflib.get_close_matches(name, known, 1, 0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """The message for an unknown plugin name, e.g. "unknown method 'lora2'; did you mean 'lora'?"."""
    known = list(known)
    hint = did_you_mean(name, known)
    if not hint:
        hint = f"; known: {', '.join(sorted(known)) or '(none)'}"
    return f"unknown {kind} '{name}'{hint}"
