"""A federated run end to end on drug-condition with the tiny BERT: rounds are stored,
bytes are counted, and a run stopped after round k resumes to the same final numbers."""

from __future__ import annotations

import pytest
import torch

from suite.federated.run import run_federated, state_bytes
from suite.federated.spec import DirichletSplit, FederatedSpec


@pytest.fixture(scope="module")
def lora_cell(tiny_plugins):
    from suite.cells import expand
    from suite.registry import Catalog
    from suite.specs.matrix import Budget, MatrixSpec

    matrix = MatrixSpec(
        name="fed", models=["tiny-bert"], methods=["lora"], tasks=["drug-condition"],
        seeds=[0], budget=Budget(max_steps=2, batch_size=8),
    )  # fmt: skip
    (cell,) = expand(matrix, Catalog.discover([tiny_plugins]))
    return cell


SPEC = FederatedSpec(clients=3, rounds=2, local_steps=1, split=DirichletSplit(alpha=0.5))


@pytest.fixture(autouse=True)
def one_thread():
    """On a loaded shared CPU two intra-op threads made evaluation ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _numbers(result):
    return [(r["validation_metrics"], r["test_metrics"], r["bytes_up"]) for r in result.rounds]


@pytest.mark.slow
def test_a_killed_run_resumes_at_its_last_round_with_the_same_numbers(lora_cell, tmp_path):
    whole = run_federated(lora_cell, SPEC, tmp_path / "whole")
    assert [r["round"] for r in whole.rounds] == [0, 1, 2] and whole.resumed_from is None
    _check_traffic(whole)

    stopped = run_federated(lora_cell, SPEC, tmp_path / "split", stop_after=1)
    assert [r["round"] for r in stopped.rounds] == [0, 1]
    resumed = run_federated(lora_cell, SPEC, tmp_path / "split")
    assert resumed.resumed_from == 1 and resumed.run_id == whole.run_id
    assert _numbers(resumed) == _numbers(whole)
    for name, tensor in whole.state.items():
        torch.testing.assert_close(resumed.state[name], tensor, rtol=0, atol=0)
    # The adapter moved away from its initial state (B starts at zero), head included.
    assert any("lora_B" in n and tensor.abs().sum() > 0 for n, tensor in whole.state.items())


def _check_traffic(result) -> None:
    """Round 0 sends nothing; round k sends the global adapter down to every non-empty
    client and each client's adapter up."""
    initial, first = result.rounds[:2]
    assert initial["bytes_up"] == initial["bytes_down"] == 0
    assert sum(initial["client_sizes"]) > 0 and 0 <= initial["label_skew"] <= 1
    active = sum(1 for n in initial["client_sizes"] if n)
    each = state_bytes(result.state)
    assert first["clients"] == active
    assert first["bytes_down"] == first["bytes_up"] == active * each
    assert set(first["validation_metrics"]) == {"accuracy", "macro_f1"}
