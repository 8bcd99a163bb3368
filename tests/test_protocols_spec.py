"""Benchmark protocols in the spec: how a matrix names one (its own name and budget, or a
declared protocol shared by matrices), what enters the cell id, the names refused, and a
budget in words."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from suite.cells import expand
from suite.specs.budget import budget_tag, default_protocol
from suite.store.protocols import budget_words
from tests.helpers import catalog
from tests.support.protocols import LEAGUE_BUDGET, SHORT_BUDGET, matrix


def test_a_matrix_without_a_protocol_is_named_after_itself_and_its_budget():
    plain = matrix(budget=SHORT_BUDGET)
    tag = budget_tag(plain.budget.model_dump(mode="json"))
    assert plain.protocol_name == f"mine@{tag}" and len(tag) == 8
    # Another budget, another protocol; a description or seed change keeps it.
    assert matrix(budget=LEAGUE_BUDGET).protocol_name != plain.protocol_name
    assert matrix(budget=SHORT_BUDGET, seeds=[0, 1, 2], description="x").protocol_name == (
        plain.protocol_name
    )
    # The tag reads the budget's set fields only, so a row's stored JSON (unset fields as
    # null) names the same protocol.
    stored = json.loads(plain.budget.model_dump_json())
    assert None in stored.values() and default_protocol("mine", stored) == plain.protocol_name


def test_a_declared_protocol_is_shared_and_enters_the_cell_id():
    league = matrix(name="league", protocol="league-v1", budget=LEAGUE_BUDGET)
    smoke = matrix(name="smoke", protocol="league-v1", budget=LEAGUE_BUDGET, seeds=[0])
    adhoc = matrix(name="league", budget=LEAGUE_BUDGET)
    assert league.protocol_name == smoke.protocol_name == "league-v1"
    ids = {c.cell_id for c in expand(league, catalog())}
    # A slice of the league (make run, later) has the league's cells...
    assert {c.cell_id for c in expand(smoke, catalog())} <= ids
    # ...and an ad-hoc matrix with the same cells runs its own, in its own protocol.
    assert not ids & {c.cell_id for c in expand(adhoc, catalog())}
    cell = expand(adhoc, catalog())[0]
    assert cell.protocol is None and cell.protocol_name == adhoc.protocol_name


def test_an_undeclared_protocol_keeps_older_cell_ids():
    """Unset, the protocol stays out of the hash (tests/test_expand.py pins the builtin
    matrices' ids); the matrix name never enters it."""
    a, b = expand(matrix(), catalog())[0], expand(matrix(name="other"), catalog())[0]
    assert a.cell_id == b.cell_id and a.protocol_name != b.protocol_name


@pytest.mark.parametrize("bad", ["League-v1", "league v1", "mine@1234abcd", "", "-x"])
def test_bad_protocol_names_are_refused(bad):
    with pytest.raises(ValidationError, match="expected a lower-case name"):
        matrix(protocol=bad)


def test_budget_in_words():
    tuning = {"trials": 4, "sampler": "random", "seed": 0}
    assert budget_words(LEAGUE_BUDGET, tuning, [0, 1, 2]) == (
        "3 epochs, batch 32, lr tuned over 4 trials on validation, 3 seeds"
    )
    assert budget_words({"epochs": 1.0, **SHORT_BUDGET}, None, [0]) == (
        "1 epoch, at most 20 steps, batch 16, untuned (each method's default learning rate), 1 seed"
    )
    assert budget_words({"tokens": 204800, "batch_size": 8}, None, [0, 1]).startswith(
        "204,800 training tokens, batch 8"
    )
