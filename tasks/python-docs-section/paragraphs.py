"""Prose paragraphs of the Python 3.11 documentation, labelled with their section.

The pages are python-docs-lm's corpus (Debian's python3.11-doc; read and checked against
its SHA-256 by that task's loader). Each page's first path component is its section
(`library`, `c-api`, `whatsnew`, ...). A page is cut at blank lines into blocks; a block
is kept as a paragraph when it is prose: not a directive (`.. note::`), not a doctest,
not a code block (the indented blocks after a line ending in `::`, or under a
`.. code-block::`-like directive), not a heading or table, and at least `min_words` words.
Its lines are joined with single spaces; the reST markup inside it (`:func:` roles,
``literals``) is kept, as the text a reader of the sources sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import yaml

from suite.plugins import load_object
from suite.specs.task import DataSpec

_CODE_DIRECTIVE = re.compile(
    r"^\.\. (code-block|sourcecode|doctest|testcode|testoutput|productionlist)::"
)
_MARKUP_ONLY = re.compile(r"^[=\-~^\"'`#*+<>|_:.]+$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def paragraphs(text: str, min_words: int) -> list[str]:
    """The prose paragraphs of one page, in order."""
    out: list[str] = []
    code_indent: int | None = None  # inside a code block opened at this indent
    for block in re.split(r"\n\s*\n", text):
        lines = [line.rstrip() for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        indent = _indent(lines[0])
        if code_indent is not None and indent > code_indent:
            continue
        code_indent = None
        first = lines[0].strip()
        if _CODE_DIRECTIVE.match(first) or (
            lines[-1].endswith("::") and not first.startswith("..")
        ):
            code_indent = indent
        if first.startswith(("..", ">>>", "|", "+", "*", "-", "#", "=")) or any(
            _MARKUP_ONLY.match(line.strip()) for line in lines
        ):
            continue
        words = " ".join(line.strip() for line in lines)
        if len(words.split()) >= min_words:
            out.append(words)
    return out


def load_paragraphs(data: DataSpec, task_dir: Path) -> dict[str, pd.DataFrame]:
    """{train: frame of (page, section, text)}; the task carves test and validation by page.

    The corpus is the task folder `options.corpus_task` names (python-docs-lm): its
    loader and options (Debian package, folder, SHA-256) are read from its task.yaml,
    so they are written once."""
    corpus_dir = (task_dir / data.options["corpus_task"]).resolve()
    corpus = yaml.safe_load((corpus_dir / "task.yaml").read_text())["data"]
    load_documents = load_object(corpus["loader"], corpus_dir)
    spec = DataSpec(options={**corpus["options"], "validation_pct": 0, "test_pct": 0})
    pages = load_documents(spec, corpus_dir)["train"]
    min_words = int(data.options.get("min_words", 12))
    rows = [
        {"page": page, "section": page.split("/")[0], "text": paragraph}
        for page, text in zip(pages["path"], pages["text"], strict=True)
        if "/" in page  # top-level pages (about, glossary, ...) belong to no section
        for paragraph in paragraphs(text, min_words)
    ]
    return {"train": pd.DataFrame(rows, columns=["page", "section", "text"])}
