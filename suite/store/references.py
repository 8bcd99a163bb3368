"""Reference numbers from papers (suite/references/*.yaml), loaded into the store.

`reference_results` holds them, one row per number, with `measured = false` and the
paper, table and text they were read from. `Store.init` replaces the table's content
with what the files say now, so correcting a file corrects the store. Measured results
never join this table and no view ranks the two together.
"""

from __future__ import annotations

from pathlib import Path

from suite.paths import PACKAGE
from suite.specs.reference import ReferenceFile
from suite.store.columns import insert_rows

REFERENCE_DIR = PACKAGE / "references"

REFERENCE_COLUMNS: dict[str, str] = {
    "reference_file": "VARCHAR",
    "task_type": "VARCHAR",
    "dataset": "VARCHAR",
    "metric": "VARCHAR",
    "higher_is_better": "BOOLEAN",
    "method": "VARCHAR",
    "method_key": "VARCHAR",
    "model": "VARCHAR",
    "tokens": "BIGINT",
    "value": "DOUBLE",
    "paper": "VARCHAR",
    "arxiv": "VARCHAR",
    "table_ref": "VARCHAR",
    "read_from": "VARCHAR",
    "note": "VARCHAR",
    "measured": "BOOLEAN",
    "provenance": "VARCHAR",
}
PROVENANCE = "reported in paper, not measured here"

REFERENCE_TABLE = (
    "CREATE TABLE IF NOT EXISTS reference_results ("
    + ", ".join(f"{name} {kind}" for name, kind in REFERENCE_COLUMNS.items())
    + ")"
)


def load_reference_files(folder: Path = REFERENCE_DIR) -> list[ReferenceFile]:
    from suite.specs.load import load_with_includes, parse

    return [
        parse(path, load_with_includes(path), ReferenceFile)
        for path in sorted(folder.glob("*.yaml"))
    ]


def reference_rows(files: list[ReferenceFile]) -> list[dict]:
    return [
        {
            "reference_file": f.name,
            "task_type": f.task_type,
            "dataset": f.dataset,
            "metric": f.metric,
            "higher_is_better": f.higher_is_better,
            "method": row.method,
            "method_key": row.method_key,
            "model": row.model,
            "tokens": row.tokens,
            "value": row.value,
            "paper": src.paper,
            "arxiv": src.arxiv,
            "table_ref": src.table,
            "read_from": src.read_from,
            "note": src.note or None,
            "measured": False,
            "provenance": PROVENANCE,
        }  # fmt: skip
        for f in files
        for src in f.sources
        for row in src.rows
    ]


def refresh_references(con, folder: Path = REFERENCE_DIR) -> int:
    """Replace `reference_results` with the rows of the files in `folder`; returns how many."""
    rows = reference_rows(load_reference_files(folder))
    con.execute("DELETE FROM reference_results")
    insert_rows(con, "reference_results", REFERENCE_COLUMNS, rows)
    return len(rows)
