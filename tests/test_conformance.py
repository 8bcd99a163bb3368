"""The method conformance suite: one row per registered method (its method.yaml's
`conformance:` block), on a tiny BERT and on minilm-l6. See suite/conformance.py."""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.specs.matrix import MethodEntry
from tests.helpers import catalog, minilm_bench, tiny_bench

# Methods whose count is not a per-target formula (they train whole models or no targets).
WHOLE_MODEL: set[str] = set()


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


@pytest.mark.parametrize("bench_name", sorted(BENCHES))
@pytest.mark.parametrize("name", methods())
def test_param_count_matches_formula(name, bench_name):
    method, conf, resolved_method = built(name)
    if name in WHOLE_MODEL or not conf.formula:
        pytest.skip(f"{name}: no per-target formula ({conf.note or 'trains the whole model'})")
    bench = BENCHES[bench_name]()
    prepared = C.prepare(method, bench)
    targets = {**resolved_method.params, **conf.params}.get("targets", "qv")
    shapes = C.target_shapes(bench.build(0), bench, targets)
    assert C.adapter_param_count(prepared) == method.expected_trainable_params(shapes)


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
