"""Server aggregation rules: a client's adapter tensors in, the next global adapter out.

A rule is a function `(states, weights) -> state`: `states` one dict of adapter tensors
per participating client (the same names and shapes), `weights` their shares (example
counts, normalised here). Add a rule by adding a `RULES` entry; FedSVD (re-factorising
the aggregate of B A by SVD) is meant to join as one more.

FedAvg over LoRA averages A and B *separately* (the standard baseline, as in FedIT and
the FedSVD paper's baseline): the global update is then mean(B) mean(A), which is not
the mean of the clients' updates mean(B A) -- the known flaw later rules correct.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from suite.errors import unknown_name_message

State = dict[str, torch.Tensor]
Rule = Callable[[Sequence[State], Sequence[float]], State]


def _shares(weights: Sequence[float]) -> list[float]:
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"aggregation weights must be non-negative with a positive sum: {weights}")
    return [w / total for w in weights]


def fedavg(states: Sequence[State], weights: Sequence[float]) -> State:
    """Every tensor (each LoRA factor, the task head) averaged, weighted by client size
    (McMahan et al. 2017, arXiv 1602.05629, Algorithm 1's n_k / n)."""
    if not states:
        raise ValueError("fedavg needs at least one client state")
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


RULES: dict[str, Rule] = {"fedavg": fedavg}


def rule(name: str) -> Rule:
    """The aggregation rule called `name`; an unknown name is an error with a hint."""
    if name not in RULES:
        raise ValueError(unknown_name_message("aggregation rule", name, RULES))
    return RULES[name]
