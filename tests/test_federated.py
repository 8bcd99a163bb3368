"""The federated track's pure parts: the specs, the client splits, the aggregation rules
(FedAvg, FedSVD), DP clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from suite.federated.aggregate import RULES, fedavg, rule
from suite.federated.split import label_skew, partition
from suite.specs.federated import (
    DirichletSplit,
    FederatedSpec,
    FederatedTrack,
    IIDSplit,
    PrivacySpec,
)


def _labels(n: int = 2000, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n)


def test_the_spec_parses_once_and_refuses_unknown_keys_and_rules():
    spec = FederatedSpec.model_validate(
        {"clients": 4, "rounds": 3, "local_steps": 2, "split": {"kind": "dirichlet", "alpha": 0.5}}
    )
    assert spec.split == DirichletSplit(alpha=0.5) and spec.aggregation == "fedavg"
    with pytest.raises(ValidationError, match="clientz"):
        FederatedSpec.model_validate({"clients": 4, "rounds": 1, "local_steps": 1, "clientz": 2})
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


def test_a_rule_keeps_the_tensors_clients_did_not_send():
    glob = {"x.lora_A.w": torch.ones(2, 3), "x.lora_B.w": torch.zeros(3, 2)}
    sent = [{"x.lora_B.w": torch.full((3, 2), 2.0)}, {"x.lora_B.w": torch.full((3, 2), 4.0)}]
    out = rule("fedavg").aggregate(glob, sent, [1, 3], 1)
    assert out["x.lora_A.w"] is glob["x.lora_A.w"]
    torch.testing.assert_close(out["x.lora_B.w"], torch.full((3, 2), 3.5))


def test_fedsvd_refactors_the_averaged_product_with_orthonormal_a():
    """Clients send B only; B' A' equals mean(B) A, A' has orthonormal rows, and
    B' = V_r S_r (its columns' norms are the singular values, in decreasing order)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 7, generator=g)
    glob = {"q.lora_A.weight": a, "q.lora_B.weight": torch.zeros(5, 3), "head.w": torch.ones(2)}
    sent = [
        {"q.lora_B.weight": torch.randn(5, 3, generator=g), "head.w": torch.full((2,), float(c))}
        for c in range(3)
    ]
    fedsvd = rule("fedsvd")
    assert fedsvd.frozen == ("lora_A",)
    out = fedsvd.aggregate(glob, sent, [1, 2, 1], 1)
    mean_b = (
        sent[0]["q.lora_B.weight"] + 2 * sent[1]["q.lora_B.weight"] + sent[2]["q.lora_B.weight"]
    ) / 4
    new_a, new_b = out["q.lora_A.weight"], out["q.lora_B.weight"]
    torch.testing.assert_close(new_b @ new_a, mean_b @ a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_a @ new_a.T, torch.eye(3), atol=1e-5, rtol=1e-5)
    norms = new_b.norm(dim=0)
    assert torch.all(norms[:-1] >= norms[1:])
    torch.testing.assert_close(out["head.w"], torch.full((2,), 1.0))
    with pytest.raises(ValueError, match="no lora_B partner"):
        fedsvd.aggregate({"p.lora_A.weight": a}, [{"h": torch.ones(1)}], [1], 1)
    with pytest.raises(
        ValueError, match="fedsvd re-factorises lora_A/lora_B pairs; this adapter has none"
    ):
        fedsvd.aggregate({"bias": torch.ones(2)}, [{"bias": torch.ones(2)}], [1], 1)


def test_the_track_expands_to_one_run_per_split_and_rule_and_refuses_repeats():
    track = FederatedTrack.model_validate(
        {"clients": 3, "rounds": 2, "local_steps": 1, "aggregations": ["fedavg", "fedsvd"],
         "splits": [{"kind": "iid"}, {"kind": "dirichlet", "alpha": 0.5}],
         "dp": {"max_grad_norm": 2.0, "noise_multiplier": 0.5}}
    )  # fmt: skip
    runs = track.runs()
    assert [(r.split.words(), r.aggregation) for r in runs] == [
        ("iid", "fedavg"), ("iid", "fedsvd"), ("dirichlet(0.5)", "fedavg"),
        ("dirichlet(0.5)", "fedsvd"),
    ]  # fmt: skip
    assert all(r.dp == PrivacySpec(max_grad_norm=2.0, noise_multiplier=0.5) for r in runs)
    assert len({r.digest() for r in runs}) == 4
    with pytest.raises(ValidationError, match="aggregations repeat"):
        FederatedTrack(clients=2, rounds=1, local_steps=1, aggregations=["fedavg", "fedavg"])
    with pytest.raises(ValidationError, match="splits repeat"):
        FederatedTrack(clients=2, rounds=1, local_steps=1, splits=[IIDSplit(), IIDSplit()])


def test_dp_clips_each_example_to_the_norm_before_summing():
    from suite.federated.private import clipped_sum

    big = [torch.tensor([3.0, 0.0]), torch.tensor([4.0])]  # norm 5: scaled to norm 1
    small = [torch.tensor([0.3, 0.0]), torch.tensor([0.4])]  # norm 0.5: kept
    out = clipped_sum([big, small], max_norm=1.0)
    torch.testing.assert_close(out[0], torch.tensor([0.6 + 0.3, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.tensor([0.8 + 0.4]), atol=1e-5, rtol=0)


def test_a_reference_rule_names_a_golden_test_that_exists():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name, r in RULES.items():
        assert r.fidelity in {"reference", "paper", "reconstructed"}, name
        if r.fidelity == "reference":
            test = next(
                w.rstrip(",;") for w in r.source.split() if w.startswith("tests/test_golden_")
            )
            assert (root / test).is_file(), name


def test_a_private_step_is_sgd_on_the_clipped_and_noised_mean_gradient():
    """One DP-SGD step by hand: per-example gradients of a squared error, each clipped
    to C, summed, N(0, (z C)^2) noise from the client's seed added, divided by the batch."""
    from suite.federated.private import private_train
    from suite.methods.api import Prepared
    from suite.train.loop import LoopConfig

    model = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]]))
    w0 = model.weight.detach().clone()
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.1, 0.1, 0.1], [3.0, -1.0, 0.0]])
    y = torch.tensor([0.0, 1.0, 0.2, -1.0])
    sgd = Prepared(model=model, make_optimizer=lambda named, lr, wd: torch.optim.SGD(
        [p for _, p in named], lr=lr))  # fmt: skip
    dp = PrivacySpec(max_grad_norm=0.5, noise_multiplier=0.7)
    losses = private_train(
        sgd, iter([{"x": x, "labels": y}]),
        lambda m, b: ((m(b["x"]).squeeze(-1) - b["labels"]) ** 2).mean(),
        LoopConfig(steps=1, lr=0.1, schedule="constant"), dp, seed=3,
    )  # fmt: skip
    grads = [2 * ((w0 @ xi) - yi) * xi for xi, yi in zip(x, y, strict=True)]
    clipped = sum(g * min(1.0, 0.5 / (float(g.norm()) + 1e-6)) for g in grads)
    noise = torch.normal(0.0, 0.35, size=(1, 3), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.weight.detach(), w0 - 0.1 * (clipped + noise) / 4)
    assert losses == pytest.approx([float(((x @ w0.T).squeeze(-1) - y).pow(2).mean())])


def test_a_rounds_cpu_counts_every_client_once_wherever_it_ran():
    """Clients that ran in the round's own process (the sequential executor) are in its
    process CPU already: the server's share leaves them out, so none counts twice."""
    import os

    from suite.federated.client import ClientUpdate
    from suite.federated.run import round_cpu

    def update(cpu_s: float, pid: int) -> ClientUpdate:
        return ClientUpdate(0, 1, {}, [0.0], cpu_s, pid)

    here, elsewhere = os.getpid(), os.getpid() + 1
    on_ray = [update(3.0, elsewhere), update(4.0, elsewhere + 1)]
    assert round_cpu(2.0, on_ray) == {"clients_cpu_s": 7.0, "server_cpu_s": 2.0}
    in_process = [update(3.0, here), update(4.0, here)]
    assert round_cpu(9.0, in_process) == {"clients_cpu_s": 7.0, "server_cpu_s": 2.0}
    assert round_cpu(1.5, []) == {"clients_cpu_s": 0, "server_cpu_s": 1.5}


def test_a_worker_started_for_its_client_counts_its_start_and_no_other_client_twice(
    monkeypatch,
):
    """A process started after the round submitted the client (a Ray worker spawned for
    it) counts from its start, once; one older than the submission (a reused worker, the
    round's own process) counts from the client's start."""
    import time

    from suite.federated import client

    monkeypatch.setattr(client, "_RAN_A_CLIENT", False)
    assert client.cpu_start(0.0) == 0.0  # this process started after "submission" at 1970
    assert client.cpu_start(0.0) > 0.0  # its second client: from that client's start
    monkeypatch.setattr(client, "_RAN_A_CLIENT", False)
    assert client.cpu_start(time.time()) > 0.0  # a process older than the submission
    assert client.cpu_start(None) > 0.0  # a task that does not say when it was submitted
