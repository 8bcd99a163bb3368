"""bench/league_report.py: what a protocol found, written into README.md and docs/league.md
from the published dataset."""

from __future__ import annotations

import pytest

from suite.paths import CHECKOUT
from tests.helpers import load_script

report = load_script(CHECKOUT / "bench" / "league_report.py")
LEAGUE = CHECKOUT / "leaderboard" / "published" / "league-v1"


def test_readme_and_league_doc_say_what_the_published_league_holds(tmp_path):
    """The README's results table and docs/league.md's status and report are generated from
    the committed dataset (bench/league_report.py --published ... --write): a publish that
    forgets to regenerate them, or a hand edit of a number, fails here."""
    db = report.store_of(LEAGUE, tmp_path)
    for name, parts in report.generated(db, "league-v1").items():
        text = (CHECKOUT / name).read_text()
        for marker, body in parts.items():
            assert report.splice(text, marker, body) == text, (
                f"{name}'s {marker} differs from the published dataset: run "
                "bench/league_report.py --published leaderboard/published/league-v1 --write"
            )


def test_league_report_splice_needs_its_markers():
    text = "a\n<!-- league-report:t begin -->\nold\n<!-- league-report:t end -->\nb"
    assert report.splice(text, "t", "new") == text.replace("old", "new")
    with pytest.raises(SystemExit, match="no <!-- league-report:x begin -->"):
        report.splice(text, "x", "new")


def test_the_report_closes_its_connections(tmp_path, monkeypatch):
    """Every connection the report opens is closed when it returns, so the store can be
    opened for writing again in the same process (DuckDB refuses a second configuration
    of a file that is still open)."""
    import duckdb

    db = report.store_of(LEAGUE, tmp_path)
    opened, real = [], duckdb.connect

    def connect(*args, **kwargs):
        opened.append(real(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(report.duckdb, "connect", connect)
    report.generated(db, "league-v1")
    report.report(db, "league-v1")
    monkeypatch.undo()
    assert opened
    for con in opened:
        with pytest.raises(duckdb.ConnectionException, match="closed"):
            con.execute("SELECT 1")
    duckdb.connect(str(db)).close()


def test_a_protocol_no_matrix_defines_is_named_with_those_that_exist():
    with pytest.raises(SystemExit) as error:
        report.readme_table(None, "league-v9")
    said = str(error.value)
    assert said.startswith("no matrix defines protocol 'league-v9'; the matrices define: ")
    assert "league-v1" in said and "smoke@" in said
