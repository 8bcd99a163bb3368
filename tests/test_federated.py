"""The federated track's pure parts: the spec, the client splits, FedAvg, the round store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from suite.federated.aggregate import fedavg, rule
from suite.federated.rounds import RoundStore, RunMismatch
from suite.federated.spec import DirichletSplit, FederatedSpec, IIDSplit
from suite.federated.split import label_skew, partition


def _labels(n: int = 2000, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n)


def test_the_spec_parses_once_and_refuses_unknown_keys_and_rules():
    spec = FederatedSpec.model_validate(
        {"clients": 4, "rounds": 3, "local_steps": 2, "split": {"kind": "dirichlet", "alpha": 0.5}}
    )
    assert spec.split == DirichletSplit(alpha=0.5) and spec.aggregation == "fedavg"
    with pytest.raises(ValidationError, match="clientz"):
        FederatedSpec.model_validate({"clients": 4, "rounds": 1, "local_steps": 1, "clientz": 2})
    with pytest.raises(
        ValidationError, match="unknown aggregation rule 'fedavgg'; did you mean 'fedavg'"
    ):
        FederatedSpec(clients=2, rounds=1, local_steps=1, aggregation="fedavgg")
    with pytest.raises(ValidationError, match="alpha"):
        FederatedSpec.model_validate(
            {
                "clients": 2,
                "rounds": 1,
                "local_steps": 1,
                "split": {"kind": "dirichlet", "alpha": 0},
            }
        )


@pytest.mark.parametrize(
    "split", [IIDSplit(), DirichletSplit(alpha=0.3), DirichletSplit(alpha=100)]
)
def test_every_example_goes_to_exactly_one_client_and_the_split_is_seeded(split):
    labels = _labels()
    parts = partition(labels, 7, split, seed=3)
    assert len(parts) == 7
    together = np.concatenate(parts)
    assert len(together) == len(labels) and set(together.tolist()) == set(range(len(labels)))
    again = partition(labels, 7, split, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = partition(labels, 7, split, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_iid_shares_differ_in_size_by_at_most_one_and_are_barely_skewed():
    labels = _labels()
    parts = partition(labels, 6, IIDSplit(), seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert label_skew(labels, parts) < 0.1


def test_dirichlet_skew_grows_as_alpha_shrinks():
    labels = _labels()
    skew = {
        alpha: np.mean(
            [
                label_skew(labels, partition(labels, 8, DirichletSplit(alpha=alpha), s))
                for s in range(5)
            ]
        )
        for alpha in (100.0, 1.0, 0.1)
    }
    assert skew[100.0] < skew[1.0] < skew[0.1]
    assert skew[100.0] < 0.1 and skew[0.1] > 0.5


def test_fedavg_weights_each_factor_by_client_size():
    a = {"lora_A": torch.ones(2, 3), "lora_B": torch.zeros(3, 2)}
    b = {"lora_A": torch.full((2, 3), 4.0), "lora_B": torch.full((3, 2), 2.0)}
    out = fedavg([a, b], [3, 1])
    torch.testing.assert_close(out["lora_A"], torch.full((2, 3), 1.75))
    torch.testing.assert_close(out["lora_B"], torch.full((3, 2), 0.5))
    torch.testing.assert_close(fedavg([a, b], [1, 1])["lora_A"], torch.full((2, 3), 2.5))
    with pytest.raises(ValueError, match="different tensors"):
        fedavg([a, {"lora_A": a["lora_A"]}], [1, 1])
    with pytest.raises(ValueError, match="positive sum"):
        fedavg([a, b], [0, 0])


def test_fedavg_of_factors_is_not_the_average_of_the_updates():
    """The documented flaw: mean(B) mean(A) != mean(B A) (why FedSVD exists)."""
    g = torch.Generator().manual_seed(0)
    clients = [
        {"A": torch.randn(2, 5, generator=g), "B": torch.randn(4, 2, generator=g)} for _ in range(3)
    ]
    avg = fedavg(clients, [1, 1, 1])
    of_products = sum(c["B"] @ c["A"] for c in clients) / 3
    assert not torch.allclose(avg["B"] @ avg["A"], of_products, atol=1e-3)


def test_an_unknown_rule_is_named_with_a_hint():
    with pytest.raises(ValueError, match="did you mean 'fedavg'"):
        rule("fedav")


def test_the_round_store_resumes_at_the_last_complete_round(tmp_path):
    store = RoundStore(tmp_path, "run", {"spec": 1})
    assert store.last_completed() is None and store.metrics() == []
    store.save(0, {"w": torch.zeros(2)}, {"acc": 0.1})
    store.save(1, {"w": torch.ones(2)}, {"acc": 0.2})
    # A round killed between its state and its metrics does not count.
    (tmp_path / "run" / "round-0002.safetensors").write_bytes(b"partial")
    again = RoundStore(tmp_path, "run", {"spec": 1})
    assert again.last_completed() == 1
    torch.testing.assert_close(again.state(1), {"w": torch.ones(2)})
    assert [m["acc"] for m in again.metrics()] == [0.1, 0.2]
    with pytest.raises(RunMismatch, match="another run"):
        RoundStore(tmp_path, "run", {"spec": 2})
