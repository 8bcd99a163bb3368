"""Server aggregation rules: the global adapter and the clients' adapters in, the next
global adapter out.

A rule has `aggregate(global_state, states, weights, round)`: `states` one dict of
adapter tensors per participating client (the same names: the tensors the client
trained), `weights` their shares (example counts, normalised here), `round` the round
(1-based) just trained. Tensors no client sent (frozen on the clients) keep their global
value. `frozen` names the tensors (by a substring of their name) clients must not train.
Add a rule by adding a `RULES` entry.

FedAvg over LoRA averages A and B *separately* (the standard baseline, as in FedIT and
the FedSVD paper's baseline): the global update is then mean(B) mean(A), which is not
the mean of the clients' updates mean(B A) -- the known flaw later rules correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from suite.errors import unknown_name_message

State = dict[str, torch.Tensor]


def _shares(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"aggregation weights must be non-negative with a positive sum: {weights}")
    return [w / total for w in weights]


def weighted_mean(states: Sequence[State], weights: Sequence[float]) -> State:
    """Every tensor averaged, weighted by client size (McMahan et al. 2017, arXiv
    1602.05629, Algorithm 1's n_k / n), accumulated in float64."""
    if not states:
        raise ValueError("aggregation needs at least one client state")
    names = set(states[0])
    for state in states[1:]:
        if set(state) != names:
            raise ValueError("client states hold different tensors; cannot average them")
    shares = _shares(weights)
    out: State = {}
    for name in states[0]:
        acc = torch.zeros_like(states[0][name], dtype=torch.float64)
        for share, state in zip(shares, states, strict=True):
            acc += share * state[name].to(torch.float64)
        out[name] = acc.to(states[0][name].dtype)
    return out


def fedavg(states: Sequence[State], weights: Sequence[float]) -> State:
    """FedAvg of every tensor the clients sent (each LoRA factor, the task head)."""
    return weighted_mean(states, weights)


def svd_refactor(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FedSVD's re-factorisation of B A (r x d_in, d_out x r): with B A = V S U^T (thin
    SVD), A' = U^T_r (orthonormal rows) and B' = V_r diag(S_r), so B' A' = B A (its rank
    is at most r). As the authors' misc/utils.py reinit_lora (seanie12/fed-svd@36650e2),
    computed in float64 here and cast back."""
    r = a.shape[0]
    prod = b.to(torch.float64) @ a.to(torch.float64)
    v, s, uh = torch.linalg.svd(prod, full_matrices=False)
    return uh[:r].to(a.dtype), (v[:, :r] @ torch.diag(s[:r])).to(b.dtype)


@dataclass(frozen=True)
class Rule:
    """An aggregation rule: how the server combines, what clients keep frozen, and (for
    re-factorising rules) which factor pairs it re-factorises every `period` rounds."""

    name: str
    # What the rule's numbers may claim (docs/fidelity.md's labels) and what was read.
    fidelity: str
    source: str
    frozen: tuple[str, ...] = ()
    refactor: tuple[str, str] | None = None  # (A's name part, B's), e.g. lora_A, lora_B
    period: int = 1

    def aggregate(
        self, global_state: State, states: Sequence[State], weights: Sequence[float], round_: int
    ) -> State:
        out = {**global_state, **weighted_mean(states, weights)}
        if self.refactor is not None and round_ % self.period == 0:
            a_key, b_key = self.refactor
            pairs = [n for n in out if a_key in n]
            if not pairs:
                raise ValueError(
                    f"{self.name} re-factorises {a_key}/{b_key} pairs; this adapter has none "
                    f"(its tensors: {sorted(out)[:4]}...)"
                )
            for name in pairs:
                partner = name.replace(a_key, b_key)
                if partner not in out:
                    raise ValueError(f"{self.name}: {name} has no {b_key} partner {partner}")
                out[name], out[partner] = svd_refactor(out[name], out[partner])
        return out


RULES: dict[str, Rule] = {
    "fedavg": Rule(
        "fedavg",
        fidelity="paper",
        source="McMahan et al. 2017 (arXiv 1602.05629) Algorithm 1: the size-weighted mean "
        "of the clients' tensors; over LoRA, of A and B separately (FedIT, the FedSVD "
        "paper's FedAvg baseline)",
    ),
    # FedSVD (Lee et al. 2025, arXiv 2505.12805; seanie12/fed-svd@36650e2, run as
    # `--model ffa --recalculate-svd-period 1`): clients train B only (A frozen, as
    # FFA-LoRA), the server averages the Bs, then re-factorises B A by SVD each round.
    "fedsvd": Rule(
        "fedsvd",
        fidelity="reference",
        source="seanie12/fed-svd@36650e2 fedmm/fedavg/server.py Server.aggregate (--model "
        "ffa), misc/utils.py reinit_lora and freeze_target_layers; compared by "
        "tests/test_golden_fedsvd.py",
        frozen=("lora_A",),
        refactor=("lora_A", "lora_B"),
        period=1,
    ),
}


def rule(name: str) -> Rule:
    """The aggregation rule called `name`; an unknown name is an error with a hint."""
    if name not in RULES:
        raise ValueError(unknown_name_message("aggregation rule", name, RULES))
    return RULES[name]
