"""The federated track end to end on drug-condition with the tiny BERT, through the
driver: every round is stored in the DuckDB store as it completes, bytes are counted,
and a run stopped mid-way (as Ctrl-C stops it) resumes at the round after the last one
stored and ends with the numbers (and the global adapters, bit for bit) of a run that
was never stopped."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from suite.driver import in_process_executor, plan, run_plan
from suite.errors import SpecError
from suite.registry import Catalog
from suite.store.store import Store

MATRIX = """\
name: fed-tiny
models: [tiny-bert]
methods: [lora]
tasks: [drug-condition]
seeds: [0]
budget: {max_steps: 1, batch_size: 8}
federated:
  clients: 3
  rounds: 3
  local_steps: 1
  splits: [{kind: dirichlet, alpha: 0.5}]
  aggregations: [fedavg, fedsvd]
"""

COLUMNS = (
    "fed_run, aggregation, round, clients, validation_score, test_score, bytes_up, bytes_down, "
    "label_skew, client_sizes, client_final_losses, state_sha256, client_executor"
)


def write_matrix(folder: Path, text: str = MATRIX) -> Path:
    path = folder / "fed-tiny.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """On a loaded shared CPU two intra-op threads made evaluation ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class StopAfterRound:
    """An executor that stops the run (as Ctrl-C does) once a round `k` is stored."""

    def __init__(self, inner, k: int):
        self.inner, self.k = inner, k

    def prepare(self, cells) -> None:
        self.inner.prepare(cells)

    def close(self) -> None:
        self.inner.close()

    def __call__(self, cells, on_result) -> None:
        def then_stop(cell, report) -> None:
            on_result(cell, report)
            if cell.round == self.k:
                raise KeyboardInterrupt

        self.inner(cells, then_stop)


def _run(catalog: Catalog, path: Path, db: Path, stop: int | None = None):
    store = Store(db)
    the_plan = plan(catalog, str(path), store)
    executor = in_process_executor(results_dir=db.parent)
    run_plan(the_plan, store, StopAfterRound(executor, stop) if stop else executor)
    return the_plan


def rounds(db: Path):
    return Store(db).query(
        f"SELECT {COLUMNS} FROM federated_rounds WHERE status = 'ok' ORDER BY fed_run, round"
    )


@pytest.mark.slow
def test_a_stopped_federated_run_resumes_at_the_next_round_with_the_same_numbers(
    tiny_plugins, tmp_path
):
    catalog, path = Catalog.discover([tiny_plugins]), write_matrix(tmp_path)
    whole = tmp_path / "whole" / "r.duckdb"
    first = _run(catalog, path, whole)
    assert (first.to_run, first.skipped) == (8, 0) and [c.round for c in first.todo] == [0, 0]
    done = rounds(whole)
    assert list(done["round"]) == [0, 1, 2, 3] * 2
    _check_traffic(done)
    _check_cpu(whole)

    cut = tmp_path / "cut" / "r.duckdb"
    with pytest.raises(KeyboardInterrupt):
        _run(catalog, path, cut, stop=1)
    kept = rounds(cut).groupby("fed_run")["round"].max()
    assert sorted(kept) == [0, 1]  # one run stored round 1, the other only round 0
    again = plan(catalog, str(path), Store(cut))
    assert sorted(c.round for c in again.todo) == [1, 2]
    assert (again.skipped, again.to_run) == (3, 5)
    _run(catalog, path, cut)
    assert (
        rounds(cut)
        .drop(columns="client_final_losses")
        .equals(done.drop(columns="client_final_losses"))
    )
    assert list(rounds(cut)["client_final_losses"].map(list)) == list(
        done["client_final_losses"].map(list)
    )
    again = plan(catalog, str(path), Store(cut))
    assert (again.todo, again.to_run, again.skipped) == ([], 0, 8)


def _check_traffic(done) -> None:
    """Round 0 sends nothing; round k sends the global adapter down to every non-empty
    client and each client's trained tensors up: FedSVD's clients do not send A."""
    first = done[done["round"] == 0].iloc[0]
    assert first["bytes_up"] == first["bytes_down"] == 0 and 0 <= first["label_skew"] <= 1
    active = sum(1 for n in first["client_sizes"] if n)
    one = done[done["round"] == 1].set_index("aggregation")
    assert set(one["clients"]) == {active} and set(one["client_executor"]) == {"sequential"}
    assert one.loc["fedavg", "bytes_up"] == one.loc["fedavg", "bytes_down"]
    assert 0 < one.loc["fedsvd", "bytes_up"] < one.loc["fedsvd", "bytes_down"]
    assert one.loc["fedavg", "bytes_down"] == one.loc["fedsvd", "bytes_down"]


def measured_cpu(db: Path):
    return Store(db).query(
        "SELECT round, clients_cpu_s, server_cpu_s FROM federated_rounds WHERE status = 'ok'"
    )


def _check_cpu(db: Path) -> None:
    """Every round measured its CPU: round 0 trains no client, round k its clients."""
    cpu = measured_cpu(db)
    assert set(cpu[cpu["round"] == 0]["clients_cpu_s"]) == {0.0}
    assert (cpu[cpu["round"] > 0]["clients_cpu_s"] > 0).all() and (cpu["server_cpu_s"] > 0).all()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("federated: {clients: 2, rounds: 1, local_steps: 1, aggregations: [fedsdv]}",
         "did you mean 'fedsvd'"),
        ("federated: {clients: 0, rounds: 1, local_steps: 1}", "clients"),
        ("federated: {clients: 2, rounds: 1, local_steps: 1}\ntuning: {trials: 2}",
         "drop tuning"),
    ],
)  # fmt: skip
def test_a_bad_federated_matrix_is_refused(tiny_plugins, tmp_path, edit, message):
    head = MATRIX.split("federated:")[0]
    path = write_matrix(tmp_path, head + edit + "\n")
    with pytest.raises(SpecError) as info:
        plan(Catalog.discover([tiny_plugins]), str(path), Store(tmp_path / "r.duckdb"))
    assert message in str(info.value)
