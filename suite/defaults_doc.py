"""docs/method-defaults.md's table: `peftbench list methods --format md`, written between
two markers. `make docs-defaults` (python -m suite.defaults_doc) rewrites it;
tests/test_method_defaults.py fails when the committed page differs from the code."""

from __future__ import annotations

from pathlib import Path

from suite.list_records import list_records
from suite.listing import records_markdown
from suite.paths import CHECKOUT
from suite.registry import Catalog

PAGE = CHECKOUT / "docs" / "method-defaults.md"
BEGIN = "<!-- generated: peftbench list methods --format md -->\n"
END = "<!-- end generated -->\n"


def generated_table(catalog: Catalog) -> str:
    return records_markdown(list_records(catalog, "methods"), "methods")


def committed_table(page: Path = PAGE) -> str:
    text = page.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)]


def write(catalog: Catalog, page: Path = PAGE) -> None:
    text = page.read_text()
    head, tail = text[: text.index(BEGIN) + len(BEGIN)], text[text.index(END) :]
    page.write_text(head + generated_table(catalog) + tail)


if __name__ == "__main__":
    write(Catalog.discover(builtin=True))
