"""Method versions and fidelity: a version bump moves only that method's cell ids and
makes its older rows stale; version 1 methods keep their ids, and a display name moves
none; fidelity reaches every row, the leaderboard and its reference-only filter."""

from __future__ import annotations

import textwrap

from leaderboard import pagedata
from leaderboard.data import Reader
from suite.cells import expand
from suite.registry import Catalog
from suite.specs.matrix import MatrixSpec
from suite.store.store import Store
from tests.helpers import catalog
from tests.test_views import _row


def _plugin_method(root, version: int, extra: str = "") -> Catalog:
    folder = root / "methods" / "lora-v"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "method.yaml").write_text(
        textwrap.dedent(f"""\
        name: lora-v
        kind: lora
        fidelity: reference
        version: {version}
        """)
        + extra
    )
    return Catalog.discover([root])


def _ids(cat: Catalog) -> dict[str, str]:
    matrix = MatrixSpec(
        name="v", models=["minilm-l6"], methods=["lora", "lora-v"], tasks=["drug-condition"]
    )
    return {c.method.label: c.cell_id for c in expand(matrix, cat)}


def test_a_version_bump_moves_only_that_methods_cell_ids(tmp_path):
    v1 = _ids(_plugin_method(tmp_path / "a", 1))
    v2 = _ids(_plugin_method(tmp_path / "b", 2))
    assert v1["lora"] == v2["lora"]
    assert v1["lora-v"] != v2["lora-v"]
    # A `kind:` method inherits its implementation's bumps: version 1 + (2 - 1).
    cells = expand(
        MatrixSpec(name="v", models=["minilm-l6"], methods=["lora-v"], tasks=["drug-condition"]),
        _plugin_method(tmp_path / "c", 3),
    )
    assert cells[0].method.method_version == 3 and cells[0].method.fidelity == "reference"


def test_display_names_move_no_cell_id_or_method_hash(tmp_path):
    """Stored league results are keyed on cell ids: the name a method's paper writes
    (`display` in its YAML, `display_name` on a matrix entry) changes none of them."""
    from suite.cells import spec_hash
    from suite.specs.matrix import MethodEntry

    plain, shown = (
        _plugin_method(tmp_path / "a", 1),
        _plugin_method(tmp_path / "b", 1, "display: LoRA-V\n"),
    )
    assert shown.methods.get("lora-v").spec.display == "LoRA-V"
    assert spec_hash(plain.methods.get("lora-v").spec) == spec_hash(
        shown.methods.get("lora-v").spec
    )

    def cells(cat: Catalog, **entry) -> dict[str, tuple[str, str]]:
        methods = [
            "lora-v",
            MethodEntry(method="lora", label="rs", params={"rslora": True}, **entry),
        ]
        matrix = MatrixSpec(
            name="v", models=["minilm-l6"], methods=methods, tasks=["drug-condition"]
        )
        return {c.method.label: (c.cell_id, spec_hash(c.method)) for c in expand(matrix, cat)}

    assert cells(plain) == cells(shown, display_name="rsLoRA")


def test_an_entry_is_written_as_its_paper_writes_it():
    from suite.specs.matrix import MethodEntry

    assert MethodEntry(method="lora").written("LoRA") == "LoRA"
    assert MethodEntry(method="lora").written(None) == "lora"
    # A labelled entry is another configuration: not the method's name, its own or its label.
    assert MethodEntry(method="lora", label="rs").written("LoRA") == "rs"
    assert MethodEntry(method="lora", label="rs", display_name="rsLoRA").written("LoRA") == "rsLoRA"
    # A label that repeats the method's name is still the method under its own name.
    assert MethodEntry(method="lora", label="lora").written("LoRA") == "LoRA"


def test_version_one_is_not_hashed():
    cells = expand(
        MatrixSpec(name="v", models=["minilm-l6"], methods=["lora"], tasks=["drug-condition"]),
        catalog(),
    )
    assert "version" not in cells[0].model_dump(mode="json", exclude_none=True)["method"]


def test_older_method_version_rows_are_stale_and_say_why(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    store.init()
    with store.connect() as con:
        _row(con, "smora", 0, 0.4, method_hash="old", method_version=1, fidelity="reference")
        _row(con, "smora", 0, 0.6, method_hash="new", method_version=2, fidelity="reference")
        _row(con, "mole", 0, 0.5, method_hash="m", method_version=1, fidelity="reconstructed")
    rows = store.query(
        "SELECT method, method_hash, method_version, stale, stale_reason, fidelity "
        "FROM leaderboard ORDER BY method, method_version"
    ).to_dict("records")
    assert rows == [
        {"method": "mole", "method_hash": "m", "method_version": 1, "stale": False,
         "stale_reason": "", "fidelity": "reconstructed"},
        {"method": "smora", "method_hash": "old", "method_version": 1, "stale": True,
         "stale_reason": "older method version", "fidelity": "reference"},
        {"method": "smora", "method_hash": "new", "method_version": 2, "stale": False,
         "stale_reason": "", "fidelity": "reference"},
    ]  # fmt: skip


def test_reference_only_filter_hides_other_fidelity_levels(tmp_path):
    store = Store(tmp_path / "f.duckdb")
    store.init()
    with store.connect() as con:
        _row(con, "lora", 0, 0.7, fidelity="reference")
        _row(con, "mole", 0, 0.5, fidelity="reconstructed")
        _row(con, "svfit", 0, 0.6, fidelity="paper")
    reader = Reader(store.path)
    everything = pagedata.Filters("t", "tiny")
    only = pagedata.Filters("t", "tiny", reference_only=True)
    assert set(pagedata.leaderboard_rows(reader, everything)["method"]) == {"lora", "mole", "svfit"}
    assert list(pagedata.leaderboard_rows(reader, only)["method"]) == ["lora"]
