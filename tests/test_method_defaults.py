"""A method's defaults are written once, in its Params class: method.yaml may only repeat
them (it is the plan-time record a cell id hashes), and the docs' defaults table is
generated from the schema."""

from __future__ import annotations

import textwrap

import pytest

from suite.defaults_doc import committed_table, generated_table
from suite.method_defaults import effective_defaults, repeated_defaults_that_differ
from suite.registry import Catalog


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.discover()


def test_every_method_yaml_repeats_only_its_schema_defaults(catalog):
    drifted = [msg for e in catalog.methods for msg in repeated_defaults_that_differ(catalog, e)]
    assert drifted == []


def test_the_docs_defaults_table_is_the_generated_one(catalog):
    assert committed_table() == generated_table(catalog), (
        "docs/method-defaults.md differs from the Params classes: run `make docs-defaults`"
    )


def test_the_listing_says_schema_only_defaults_and_ties(catalog):
    defaults = {e.name: effective_defaults(catalog, e) for e in catalog.methods}
    assert defaults["randlora"]["alpha"] == 640  # set only in its Params, not its YAML
    assert defaults["pissa"]["init"] == "pissa" and defaults["pissa"]["alpha"] == 8  # tied
    assert defaults["galore"]["update_proj_gap"] == 500 and defaults["galore"]["scale"] == 4.0


IMPL = """
from pydantic import PositiveInt
from suite.methods.api import MethodParams

class TinyParams(MethodParams):
    r: PositiveInt = 8
    alpha: float = 24.0

class Tiny:
    Params = TinyParams
"""


def _plugin(tmp_path, params: str):
    folder = tmp_path / "methods" / "tiny"
    folder.mkdir(parents=True)
    (folder / "impl.py").write_text(IMPL)
    (folder / "method.yaml").write_text(textwrap.dedent(f"""\
        name: tiny
        implementation: impl.py:Tiny
        fidelity: paper
        version: 1
        params: {params}
        """))  # fmt: skip
    catalog = Catalog.discover([tmp_path], builtin=False)
    return catalog, catalog.methods.get("tiny")


def test_a_new_default_is_written_only_in_the_method_folder(tmp_path):
    catalog, entry = _plugin(tmp_path, "{r: 8}")
    assert effective_defaults(catalog, entry) == {"r": 8, "alpha": 24.0}
    assert repeated_defaults_that_differ(catalog, entry) == []


def test_a_yaml_default_that_differs_from_the_schema_is_named(tmp_path):
    catalog, entry = _plugin(tmp_path, "{r: 4}")
    assert repeated_defaults_that_differ(catalog, entry) == [
        "tiny: r is 4 in method.yaml but 8 in Params"
    ]
