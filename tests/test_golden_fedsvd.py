"""FedSVD's server step against the authors' code (tests/golden/fedsvd: seanie12/fed-svd
@36650e2, Server.aggregate with --model ffa, then reinit_lora).

Three clients' B matrices (A frozen on the clients) for two LoRA layers of a tiny peft
model are combined by peftbench's `fedsvd` rule, weighted by the clients' sizes, and
the re-factorised A (orthonormal rows) and B (V_r S_r) are compared with the reference's,
after aligning the sign of each singular pair (an SVD leaves it free).
"""

from __future__ import annotations

import torch

from suite.federated.aggregate import rule
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("fedsvd")
NAMES = FIX.config["names"]


def _aligned(a: torch.Tensor, b: torch.Tensor, ref_a: torch.Tensor):
    """A's rows and B's columns with each singular pair's sign flipped to the reference's."""
    signs = torch.sign((a.double() * ref_a.double()).sum(dim=1))
    signs[signs == 0] = 1
    return a * signs[:, None].to(a), b * signs[None, :].to(b)


def test_golden_fedsvd_matches_the_authors_aggregation_and_refactorisation():
    glob = {n: FIX[f"global/{n}"] for n in NAMES}
    sizes = FIX.config["sizes"]
    clients = [
        {n: FIX[f"client{c}/{n}"] for n in NAMES if "lora_B" in n} for c in range(len(sizes))
    ]
    out = rule("fedsvd").aggregate(glob, clients, sizes, 1)
    pairs = [(n, n.replace("lora_A", "lora_B")) for n in NAMES if "lora_A" in n]
    assert len(pairs) == 2
    for a_name, b_name in pairs:
        a, b = _aligned(out[a_name], out[b_name], FIX[f"after/{a_name}"])
        assert_close(a, FIX[f"after/{a_name}"], f"{a_name} after the round")
        assert_close(b, FIX[f"after/{b_name}"], f"{b_name} after the round")
        assert_close(out[b_name] @ out[a_name], FIX[f"after/{b_name}"] @ FIX[f"after/{a_name}"],
                     f"B A of {a_name}")  # fmt: skip
