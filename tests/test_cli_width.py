"""Tables the commands print keep every column whole off a terminal (80 columns there)
and on a narrow one: `verify`'s table cut its cells at 80 columns."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table


def _moved(title: str):
    from suite.verify import Moved

    return Moved("c" * 16, title, "final", "test", 0.8123, 0.8123, 0, 2400, True, "exact")


def test_verify_prints_its_table_whole_off_a_terminal():
    from suite.cli_published import _print_moved

    out = io.StringIO()
    title = "sparse-model-soups x rotten-tomatoes seed 2"
    _print_moved(Console(file=out, width=80), [_moved(title)])
    text = out.getvalue()
    assert "…" not in text and title in text
    for header in ("published", "rerun", "delta", "changed", "same hw", "status", "exact"):
        assert header in text
    assert max(map(len, text.splitlines())) > 80


def test_a_narrow_terminal_gets_the_full_width_and_a_wide_one_is_kept():
    from suite.cli_common import full_width

    table = Table()
    for i in range(6):
        table.add_column(f"column-number-{i}")  # no space to wrap at: cut below 6 x 17
    narrow = Console(file=io.StringIO(), width=40, force_terminal=True)
    wide = full_width(narrow, table)
    assert wide.width >= 6 * len("column-number-0") and wide.is_terminal
    roomy = Console(file=io.StringIO(), width=300)
    assert full_width(roomy, table) is roomy
