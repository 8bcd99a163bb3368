"""docs/fidelity.md stays true: one row per registered method with its YAML's fidelity
and version, a golden test named for every `reference` row, and the counts line right.
The README states the same counts."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from suite.cells import resolve_method
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"


def _rows() -> dict[str, dict[str, str]]:
    header = None
    rows = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(cells[0]) <= {"-"}:
            continue
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def _declared() -> dict[str, tuple[str, int]]:
    cat = catalog()
    out = {}
    for entry in cat.methods:
        if entry.spec.status == "test-only":
            continue
        method = resolve_method(cat, MethodEntry(method=entry.name))
        out[entry.name] = (method.fidelity, method.method_version)
    return out


def test_every_method_has_a_row_with_its_fidelity_and_version():
    rows, declared = _rows(), _declared()
    assert sorted(rows) == sorted(declared)
    for name, (fidelity, version) in declared.items():
        assert rows[name]["fidelity"] == fidelity, name
        assert int(rows[name]["version"]) == version, name


def test_every_reference_method_names_a_golden_test_that_exists():
    for name, row in _rows().items():
        if row["fidelity"] != "reference":
            continue
        path = ROOT / row["golden test"]
        assert path.is_file(), f"{name}: {path} does not exist"
        assert "def test_golden_" in path.read_text(), f"{name}: no test_golden_ in {path}"


def test_the_counts_line_agrees_with_the_yamls_and_the_readme_has_none():
    counts = Counter(f for f, _ in _declared().values())
    expected = (
        f"{counts['reference']} `reference`, {counts['paper']} `paper`, "
        f"{counts['reconstructed']} `reconstructed` ({sum(counts.values())} methods"
    )
    assert expected in DOC.read_text()
    # The counts are written once, in docs/fidelity.md: a new method edits no README.
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    assert not re.search(r"\d+ built-in methods", readme)
