"""The method conformance suite: one row per registered method (its method.yaml's
`conformance:` block), on a tiny BERT and on minilm-l6. See suite/conformance.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, minilm_bench, tiny_bench


def _randlora(p, d_out, d_in):
    k, n = min(d_in, d_out), -(-min(d_in, d_out) // p["r"])  # n = ceil(k / r)
    return n * (p["r"] + k)  # lambda (r x n) and gamma (n x k)


def _salt(p, d_out, d_in):
    k = min(d_in, d_out)
    r = max(1, int(k * p["ratio"]))
    return 2 * r + 2 * (k - r) * p["r_lora"]  # top-r scale and shift; the rest's X, Y


# TLoRA's index splits at order 4, by hand: 32 = 4 x 2 x 2 x 2, 384 = 6 x 4 x 4 x 4.
_TLORA_SPLITS = {(4, 32): (4, 2, 2, 2), (4, 384): (6, 4, 4, 4)}


def _tlora_cores(order, d_out, d_in):
    ins, outs = _TLORA_SPLITS[order, d_in], _TLORA_SPLITS[order, d_out]
    return sum(n * n for n in ins) + sum(ins) + sum(outs)


def _hydra(p, d_out, d_in):
    par = p["r_par"] * d_in + p["r_par"] + d_out * p["r_par"] + d_out  # down, up (+ biases)
    seq = p["r_seq"] * d_out + p["r_seq"] + d_out * p["r_seq"] + d_out
    return par + seq


# Trainable adapter parameters per target weight (d_out x d_in), from each paper's (or
# PEFT's) definition, written out here by hand so the count check never compares a
# method with its own formula. p: the conformance hyperparameters.
HAND_COUNTS = {
    "lora": lambda p, o, i: p["r"] * (i + o),
    "pissa": lambda p, o, i: p["r"] * (i + o),
    "dora": lambda p, o, i: p["r"] * (i + o) + o,  # + the magnitude vector
    "comp-lora": lambda p, o, i: p["r"] * (i + o),  # full-size A and B, projected
    "block-lora": lambda p, o, i: p["r"] * o + p["r"] * i // p["blocks"],  # one shared A block
    "vera": lambda p, o, i: o + p["r"],  # lambda_b and lambda_d
    "randlora": _randlora,
    "nola": lambda p, o, i: p["num_basis_A"] + p["num_basis_B"],  # coefficients only
    "lora-xs": lambda p, o, i: p["r"] ** 2,
    "lora-sb": lambda p, o, i: p["r"] ** 2,
    "loldu": lambda p, o, i: p["r"],  # z; the scale is frozen by default
    "svfit": lambda p, o, i: p["r"],  # the top-r singular values (fixed r here)
    "salt": _salt,
    "hydra": _hydra,
    "fourierft": lambda p, o, i: p["n_frequency"],
    "shira": lambda p, o, i: p["r"] * (i + o),  # nonzeros at LoRA's budget
    "sora": lambda p, o, i: p["r"] * (i + o) + p["r"],  # LoRA plus the gate
    "codyra": lambda p, o, i: p["r"] * (i + o) + p["r"],  # LoRA plus a gate per rank
    # the current task's r rank-1 experts (A rows, B columns); earlier tasks' are frozen
    "moram": lambda p, o, i: p["r"] * (i + o),
    "adalora": lambda p, o, i: p["init_r"] * (i + o + 1),  # P, Q and lambda at init_r
    "increlora": lambda p, o, i: p["r"] * (i + o + 1),  # AdaLoRA's form at the start rank
    "mole": lambda p, o, i: p["experts"] * (p["r"] * (i + o) + i + 1),  # + its block router
    "allora": lambda p, o, i: p["r"] * (i + o),  # plain LoRA factors
    # k coefficients and 2k locations, all trainable after prepare (the locations until
    # B_s); the row reports the k coefficients (Prepared.trainable_count).
    "loca": lambda p, o, i: 3 * p["n_frequency"],
    # one pair on half-size subbands: A is r x ceil(d_in / 2), B is ceil(d_out / 2) x r
    "wara": lambda p, o, i: p["r"] * ((i + 1) // 2 + (o + 1) // 2),
    "diffora": lambda p, o, i: p["r"] * (i + o),  # every module a LoRA before the selection
    # LoRA's budget, r per target, re-split by contribution: the same total when the
    # targets share d_in + d_out (q and v here)
    "colora": lambda p, o, i: p["r"] * (i + o),
    # R^2 per core slice: the transform's D cores I_d x I_d, the residual's O_d and I_d cores
    "tlora": lambda p, o, i: p["rank"] ** 2 * _tlora_cores(p["order"], o, i),
    "lq-lora": lambda p, o, i: p["r"] * (i + o),  # L1 and L2 as LoRA's B and A
    "qlora": lambda p, o, i: p["r"] * (i + o),
    # floor(i o / (ratio (i + o))) ranks of two factors (train: factors; biases stay W's).
    # both SVD factors at full inner width plus W's bias (all trainable in the reference)
    "maestro": lambda p, o, i: min(i, o) * (i + o) + o,
    # the full target weight and its bias train (the reference trains every weight); the
    # trained rank's count r (i + o) + o only exists after the end's decomposition
    "trp": lambda p, o, i: o * i + o,
    "pela": lambda p, o, i: int(i * o // (p.get("ratio", 3.0) * (i + o))) * (i + o),
    "sketch-to-adapt": lambda p, o, i: o * p["gpr"] * 2 ** p["bits"],  # a table per group
    "head": lambda p, o, i: 0,
    # Pretraining replacements (train_rest off: the factors alone train).
    "low-rank": lambda p, o, i: p["r"] * (i + o),
    "sltrain": lambda p, o, i: p["r"] * (i + o) + int(p["delta"] * o * i),  # + the support
    "sst": lambda p, o, i: min(o, i) + p["r"] * (i + o),  # all sigma, r pairs of vectors
    "cast": lambda p, o, i: o * i + o,  # the dense weight and a scale per row
    "lost": lambda p, o, i: p["r"] * (i + o) + o * max(1, round(p["channel_ratio"] * i)),
    # Bottleneck d -> d // 16 -> d at a sublayer output of width d = d_out, with biases.
    "adapter": lambda p, o, i: 2 * o * (o // 16) + o // 16 + o,
    # The same adapter, its up-projection split into `experts` modules each with its own bias.
    "lora-mixer": lambda p, o, i: p["experts"] * (p["r"] * (i + o) + i),  # + router
    "sara": lambda p, o, i: max(1, int(p["fraction"] * o * i)),  # the smallest share
    "mosa": lambda p, o, i: 2 * o * (o // 16) + o // 16 + p["experts"] * o,
}
# Counts whose external numbers live in a golden test instead (their reference code's
# count on the fixture's layers: pools shared across layers, kernels, routers and biases
# the paper's text does not spell out).
GOLDEN_COUNTS = {
    "mos": "tests/test_golden_mos.py",
    "smora": "tests/test_golden_smora.py",
    "snell": "tests/test_golden_snell.py",
    "snella": "tests/test_golden_snella.py",
}


def methods():
    cat = catalog()
    return [e.name for e in cat.methods if e.spec.status != "test-only"]


def resolved(name: str):
    cat = catalog()
    entry = cat.methods.get(name)
    method = resolve_method(cat, MethodEntry(method=name))
    return method, entry.spec.conformance


def built(name: str):
    method, conf = resolved(name)
    return C.instantiate(method, conf.params), conf, method


BENCHES = {"tiny": tiny_bench, "minilm": minilm_bench}


def test_every_counted_method_has_an_external_count():
    counted = {n for n in methods() if resolved(n)[1].formula}
    assert counted <= set(HAND_COUNTS) | set(GOLDEN_COUNTS), counted - set(HAND_COUNTS)
    for test in GOLDEN_COUNTS.values():
        assert "def test_golden_" in (Path(__file__).parent.parent / test).read_text()


@pytest.mark.parametrize("bench_name", sorted(BENCHES))
@pytest.mark.parametrize("name", methods())
def test_param_count_matches_the_hand_derived_count(name, bench_name):
    method, conf, resolved_method = built(name)
    if not conf.formula:
        pytest.skip(f"{name}: no per-target formula ({conf.note or 'trains the whole model'})")
    if name in GOLDEN_COUNTS:
        pytest.skip(f"{name}: its count is checked against its reference in {GOLDEN_COUNTS[name]}")
    bench = BENCHES[bench_name]()
    prepared = C.prepare(method, bench)
    params = {**resolved_method.params, **conf.params}
    shapes = C.target_shapes(bench.build(0), bench, params.get("targets", "qv"))
    expected = sum(HAND_COUNTS[name](params, d_out, d_in) for d_out, d_in in shapes)
    assert C.adapter_param_count(prepared) == expected
    # The method's own formula (what `validate --conformance` checks for user plugins)
    # agrees with the hand-derived count.
    assert method.expected_trainable_params(shapes) == expected


@pytest.mark.parametrize("name", methods())
def test_identity_at_init(name):
    method, conf, _ = built(name)
    drift = C.check_identity(method, tiny_bench())
    if conf.identity_at_init:
        assert drift < 1e-6, f"{name} changes the model at init by {drift}"
    else:
        assert conf.note, (
            f"{name} does not claim identity at init; its conformance note must say why"
        )


@pytest.mark.parametrize("name", methods())
def test_merge_equivalence(name):
    method, conf, _ = built(name)
    prepared = C.prepare(method, tiny_bench())
    if prepared.merge is None:
        pytest.skip(f"{name} is not mergeable")
    assert C.check_merge(prepared, tiny_bench()) < C.MERGE_TOL


@pytest.mark.parametrize("name", methods())
def test_gradients_reach_only_trainable_tensors(name):
    method, _, _ = built(name)
    leaked, starved = C.gradient_leaks(C.prepare(method, tiny_bench()), tiny_bench())
    assert not leaked, f"frozen tensors got gradients: {sorted(leaked)[:5]}"
    assert not starved, f"trainable tensors got no gradient: {sorted(starved)[:5]}"


@pytest.mark.parametrize("name", methods())
def test_adapter_reloads_to_identical_outputs(name):
    method, _, _ = built(name)
    assert C.check_reload(method, tiny_bench()) == 0.0


@pytest.mark.parametrize("name", methods())
def test_training_reduces_loss(name):
    method, conf, _ = built(name)
    if not conf.loss_decreases:
        pytest.skip(conf.note)
    torch.manual_seed(0)
    first, last = C.check_training(method, tiny_bench())
    assert last < first, f"{name}: loss {first:.4f} -> {last:.4f}"
