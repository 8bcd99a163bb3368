"""Machine-readable output is typed: `list --format json` gives booleans, lists, numbers,
null, snake_case keys and whole descriptions; `query --format json/csv` keeps integers
integers (also a nullable count, a SUM's DECIMAL), and the table prints them whole."""

from __future__ import annotations

import json

import duckdb
from typer.testing import CliRunner

from suite.cli import app


def _json(*args: str):
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_list_json_is_typed():
    methods = {r["name"]: r for r in _json("list", "methods")}
    lora = methods["lora"]
    assert lora["mergeable"] is True and lora["kind"] is None and lora["version"] == 1
    assert lora["size_params"] == ["r"] and lora["fidelity"] == "reference"
    assert all(" " not in key for r in methods.values() for key in r)
    assert any(len(r["description"]) > 80 for r in methods.values())  # not cut
    models = {r["name"]: r for r in _json("list", "models")}
    assert models["minilm-l6"]["source_kind"] == "package"
    assert models["minilm-l6"]["target_families"][:2] == ["qv", "attention"]
    configured = [r for r in models.values() if r["source_kind"] == "config"]
    assert configured and all(r["source"] == r["family"] for r in configured), configured
    matrices = {r["name"]: r for r in _json("list", "matrices")}
    assert matrices["smoke"]["seeds"] == [0] and matrices["smoke"]["methods"] == [
        "head", "lora", "full"]  # fmt: skip
    profiles = {r["name"]: r for r in _json("list", "profiles")}
    assert profiles["cpu-local"]["gpus"] == 0
    tasks = {r["name"]: r for r in _json("list", "tasks")}
    assert tasks["drug-condition"]["metrics"] == ["accuracy", "macro_f1"]


def test_list_csv_keeps_one_row_per_spec():
    result = CliRunner().invoke(app, ["list", "methods", "--format", "csv"])
    assert "\nlora,low-rank,,reference,1,True," in result.output


def test_query_keeps_integers_integers(tmp_path):
    db = tmp_path / "q.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (77580, 2.5), (NULL, 1.0)) v(n, x)")
    sql = "SELECT n, x, sum(n) OVER () AS total FROM t ORDER BY n NULLS LAST"
    rows = _json("query", sql, "--db", str(db))
    assert rows == [{"n": 77580, "x": 2.5, "total": 77580}, {"n": None, "x": 1.0, "total": 77580}]
    csv = CliRunner().invoke(app, ["query", sql, "--db", str(db), "--format", "csv"]).output
    assert csv.splitlines()[1:] == ["77580,2.5,77580", ",1.0,77580"]
    table = CliRunner().invoke(app, ["query", "SELECT avg(n) AS a FROM t", "--db", str(db)])
    assert "77580" in table.output and "e+04" not in table.output
