"""docs/posthoc.md stays true: one row per post-hoc method with its YAML's stage,
fidelity and version, a golden test named for every `reference` row, and the counts
line (and the README's) right."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.helpers import catalog

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "posthoc.md"


def _rows() -> dict[str, dict[str, str]]:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(cells[0]) <= {"-", " "}:
            continue
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_every_posthoc_method_has_a_row_with_its_stage_fidelity_and_version():
    rows = _rows()
    declared = {e.name: e.spec for e in catalog().posthoc}
    assert sorted(rows) == sorted(declared)
    for name, spec in declared.items():
        row = rows[name]
        assert (row["stage"], row["fidelity"], int(row["version"])) == (
            spec.stage, spec.fidelity, spec.version,
        ), name  # fmt: skip
        assert (ROOT / row["checked by"]).is_file(), name


def test_every_reference_posthoc_method_names_a_golden_test():
    for name, row in _rows().items():
        if row["fidelity"] == "reference":
            text = (ROOT / row["checked by"]).read_text()
            assert "def test_golden_" in text or "peft" in text.lower(), name


def _counts_line(text: str) -> tuple[int, int, int, int]:
    found = re.search(
        r"(\d+) post-hoc methods: (\d+) `reference`, (\d+) `paper`,\s+(\d+)\s+`reconstructed`",
        text,
    )
    assert found, "no counts line"
    return tuple(int(g) for g in found.groups())


def test_the_counts_in_the_doc_and_the_readme_are_right():
    counts = Counter(e.spec.fidelity for e in catalog().posthoc)
    expected = (sum(counts.values()), counts["reference"], counts["paper"], counts["reconstructed"])
    assert _counts_line(DOC.read_text()) == expected
    assert _counts_line((ROOT / "README.md").read_text()) == expected
