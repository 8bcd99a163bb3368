"""A federated matrix through `peftbench run` on an embedded Ray (the default
executor): the round runs on a Ray worker, its clients as Ray tasks (one each), and the
stored numbers are those of the same rounds run in one process."""

from __future__ import annotations

import pytest

from suite.registry import Catalog
from tests.test_cli_e2e import cli
from tests.test_federated_run import MATRIX, _run, measured_cpu, rounds, write_matrix

ONE_ROUND = MATRIX.replace("rounds: 3", "rounds: 1").replace(
    "aggregations: [fedavg, fedsvd]", "aggregations: [fedsvd]"
)


@pytest.mark.slow
def test_clients_run_as_ray_tasks_with_the_numbers_of_a_local_run(tiny_plugins, tmp_path):
    path = write_matrix(tmp_path, ONE_ROUND)
    db = tmp_path / "ray" / "r.duckdb"
    out = cli("run", str(path), "--plugins", str(tiny_plugins), "--db", str(db), timeout_s=1200)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "2 cells (federated rounds" in out.stderr and "federated results" in out.stdout
    on_ray = rounds(db)
    assert list(on_ray["round"]) == [0, 1]
    assert list(on_ray["client_executor"].fillna("-")) == ["-", "ray"]
    # Each client timed itself in its Ray worker; the round, its own process.
    trained = measured_cpu(db).query("round == 1").iloc[0]
    assert trained["clients_cpu_s"] > 0 and trained["server_cpu_s"] > 0

    local = tmp_path / "local" / "r.duckdb"
    _run(Catalog.discover([tiny_plugins]), path, local)
    here = rounds(local)
    assert list(here["client_executor"].fillna("-")) == ["-", "sequential"]
    for column in ("validation_score", "test_score"):
        assert list(on_ray[column]) == pytest.approx(list(here[column]), abs=1e-9)
    assert list(on_ray["bytes_up"]) == list(here["bytes_up"])
