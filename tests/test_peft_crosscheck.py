"""peftbench's native low-rank methods against Hugging Face PEFT 0.21 on the same model.

Both sides start from the same base weights; the native adapter tensors are perturbed away
from their init and copied into PEFT's, then forward outputs and the gradients of every
adapter tensor must agree within 1e-5, and trainable counts must be equal.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, train
from tests.helpers import catalog, minilm_bench, tiny_bench

TOL = 1e-5
TARGETS = "all-linear"  # square, wide and tall layers: every slicing branch is exercised


def native(name: str, **params):
    method = resolve_method(catalog(), MethodEntry(method=name, params=params))
    return C.instantiate(method)


def peft_config(name: str, method, names: list[str]):
    """The PEFT config equivalent to a native method's params, on the same modules."""
    import peft

    p = method.params
    if name in ("lora", "dora"):
        return peft.LoraConfig(
            r=p.r,
            lora_alpha=p.alpha,
            lora_dropout=p.dropout,
            target_modules=names,
            use_dora=name == "dora",
        )
    if name == "vera":
        return peft.VeraConfig(
            r=p.r,
            target_modules=names,
            projection_prng_key=p.projection_prng_key,
            d_initial=p.d_initial,
        )
    if name == "randlora":
        return peft.RandLoraConfig(r=p.r, randlora_alpha=p.alpha, target_modules=names)
    return peft.FourierFTConfig(
        n_frequency=p.n_frequency,
        scaling=p.scaling,
        random_loc_seed=p.random_loc_seed,
        target_modules=names,
    )


# Test-sized hyperparameters (RandLoRA r=4 gives n=8 bases on the 32-wide tiny BERT).
CASES = {
    "lora": {"r": 4, "alpha": 8},
    "dora": {"r": 4, "alpha": 8},
    "vera": {"r": 16},
    "randlora": {"r": 4, "alpha": 80},
    "fourierft": {"n_frequency": 200, "init_zero": True},
}


def peft_twin(name: str, method, bench):
    """A fresh task model (same seed, same base weights) with PEFT's adapter injected."""
    import peft

    model = bench.build(0)
    patterns = bench.preset.resolve_targets(TARGETS)
    from suite.methods.targets import find_targets

    names = [n for n, _ in find_targets(model.backbone, patterns)]
    config = peft_config(name, method, names)
    # The tuner class itself: inject_adapter_in_model refuses VeRA's shared state.
    model.tuner = peft.PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type](
        model.backbone, config, "default"
    )
    return model.eval()


def peft_key(name: str) -> str:
    """PEFT's parameter name -> peftbench's (adapter 'default', DoRA's magnitude module)."""
    name = name.replace(".default", "").replace("lora_magnitude_vector.weight", "magnitude")
    return name.replace(".base_layer.", ".base.")


def adapter_tensors(module, rename=lambda n: n) -> dict[str, torch.nn.Parameter]:
    named = module.named_parameters()
    return {rename(n): p for n, p in named if p.requires_grad and not n.startswith("tuner.")}


def twins(name: str, **extra):
    bench = tiny_bench()
    method = native(name, targets=TARGETS, **{**CASES[name], **extra})
    ours = C.prepare(method, bench).model
    theirs = peft_twin(name, method, bench)
    C.perturb(ours)
    mine, other = adapter_tensors(ours), adapter_tensors(theirs, peft_key)  # head included
    assert sorted(mine) == sorted(other)
    with torch.no_grad():
        for key, tensor in mine.items():
            other[key].copy_(tensor)
    return bench, ours, theirs


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_peft(name):
    bench, ours, theirs = twins(name)
    diff = (C.outputs(ours, bench) - C.outputs(theirs, bench)).abs().max()
    assert diff < TOL, f"{name}: outputs differ from PEFT's by {float(diff)}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_peft(name):
    bench, ours, theirs = twins(name)
    for model in (ours, theirs):
        model.train()
        C.loss_fn(model, bench.batches[0]).backward()
    mine, other = adapter_tensors(ours), adapter_tensors(theirs, peft_key)
    for key, tensor in mine.items():
        diff = (tensor.grad - other[key].grad).abs().max()
        assert diff < TOL, f"{name}: gradient of {key} differs from PEFT's by {float(diff)}"


@pytest.mark.parametrize("name", ["lora", "dora"])
def test_training_with_dropout_matches_peft(name):
    """Same seed, same dropout masks: DoRA's dropout path (W0 on the dropped input) too."""
    bench, ours, theirs = twins(name, dropout=0.3)
    outs = []
    for model in (ours, theirs):
        model.train()
        torch.manual_seed(7)
        out = model(**bench.batches[0])
        torch.nn.functional.cross_entropy(out, bench.batches[0]["labels"]).backward()
        outs.append(out.detach())
    assert (outs[0] - outs[1]).abs().max() < TOL
    mine, other = adapter_tensors(ours), adapter_tensors(theirs, peft_key)
    for key, tensor in mine.items():
        assert (tensor.grad - other[key].grad).abs().max() < TOL, key


@pytest.mark.parametrize("name", ["vera", "randlora"])
def test_shared_random_bases_equal_peft(name):
    bench = tiny_bench()
    method = native(name, targets=TARGETS, **CASES[name])
    ours = C.prepare(method, bench).model
    theirs = peft_twin(name, method, bench)
    layer = ours.backbone.encoder.layer[0].attention.self.query
    peft_layer = theirs.backbone.encoder.layer[0].attention.self.query
    prefix = "vera" if name == "vera" else "randlora"
    assert torch.equal(layer.bases.A, getattr(peft_layer, f"{prefix}_A")["default"])
    assert torch.equal(layer.bases.B, getattr(peft_layer, f"{prefix}_B")["default"])


def test_fourierft_locations_and_default_init_follow_peft():
    bench = tiny_bench()
    method = native("fourierft", targets=TARGETS, n_frequency=200)
    ours = C.prepare(method, bench).model
    theirs = peft_twin("fourierft", method, bench)
    for name in ("query", "value"):
        layer = getattr(ours.backbone.encoder.layer[1].attention.self, name)
        peft_layer = getattr(theirs.backbone.encoder.layer[1].attention.self, name)
        assert torch.equal(layer.indices, peft_layer.indices["default"])
        assert layer.fourierft_spectrum.abs().min() > 0  # N(0, 1), not zero, as PEFT


BENCHES = {"tiny": tiny_bench, "minilm": minilm_bench}


@pytest.mark.parametrize("bench_name", sorted(BENCHES))
@pytest.mark.parametrize("name", sorted(CASES))
def test_trainable_counts_equal_peft(name, bench_name):
    bench = BENCHES[bench_name]()
    method = native(name, targets=TARGETS, **CASES[name])
    ours = C.adapter_param_count(C.prepare(method, bench))
    twin = peft_twin(name, method, bench)
    theirs = sum(p.numel() for p in adapter_tensors(twin.backbone).values())
    assert ours == theirs
    shapes = C.target_shapes(bench.build(0), bench, TARGETS)
    assert ours == method.expected_trainable_params(shapes)


# --- kind: peft (PEFT's own tuners as peftbench methods) -------------------------------


def peft_kind(name: str = "peft", **params):
    return native(name, **params)


def test_peft_kind_lora_matches_native_lora():
    bench = tiny_bench()
    ours = C.prepare(native("lora", r=4, alpha=8, targets="attention"), bench).model
    cfg = {"r": 4, "lora_alpha": 8}
    theirs = C.prepare(peft_kind(config=cfg, targets="attention"), bench).model
    C.perturb(ours)
    other = adapter_tensors(theirs, peft_key)
    with torch.no_grad():
        for key, tensor in adapter_tensors(ours).items():
            other[key].copy_(tensor)
    assert (C.outputs(ours, bench) - C.outputs(theirs, bench)).abs().max() < TOL


def test_peft_kind_rejects_unknown_type_and_config_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown PEFT type"):
        peft_kind(peft_type="LORA2")
    with pytest.raises(ValidationError, match="no field"):
        peft_kind(config={"rank": 4})
    with pytest.raises(ValidationError, match="use `targets`"):
        peft_kind(config={"target_modules": ["query"]})


def test_peft_ia3_feedforward_modules_resolve_to_targets():
    prepared = C.prepare(peft_kind("peft-ia3"), tiny_bench())
    layer = prepared.model.backbone.encoder.layer[0]
    assert layer.output.dense.is_feedforward
    assert not layer.attention.self.key.is_feedforward
    assert layer.output.dense.ia3_l["default"].shape == (1, 64)  # scales the 64-wide input


def test_peft_adalora_allocates_ranks_and_adds_orthogonality_penalty():
    config = {"init_r": 6, "target_r": 2, "tinit": 2, "tfinal": 2, "deltaT": 1}
    prepared = C.prepare(peft_kind("peft-adalora", config=config), tiny_bench())
    hooks = prepared.hooks
    penalty = hooks.extra_loss()
    assert penalty is not None and penalty.requires_grad and float(penalty.detach()) > 0
    model = prepared.model
    steps = 12
    cfg = LoopConfig(steps=steps, lr=1e-2, schedule="constant")
    train(prepared, itertools.repeat(tiny_bench().batches[0]), C.loss_fn, cfg)
    assert hooks.config.total_step == steps
    kept = sum(
        int(torch.count_nonzero(p)) for n, p in model.backbone.named_parameters() if "lora_E" in n
    )
    modules = 2 * 2  # query and value in two layers
    assert kept == 2 * modules  # the budget fell from init_r=6 to target_r=2 per module


def test_peft_step_hooks_are_declared_not_probed():
    """A tuner with steps of its own runs only with the hook class its method names."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hooks: hooks.py:AdaLoraHooks"):
        peft_kind(peft_type="ADALORA", config={"init_r": 4, "target_r": 2})
    with pytest.raises(ValidationError, match="are for"):
        peft_kind(peft_type="LORA", hooks="hooks.py:AdaLoraHooks")
    with pytest.raises(ValidationError, match="not found"):
        peft_kind(hooks="nohooks.py:X")
    plain = C.prepare(peft_kind(config={"r": 4, "lora_alpha": 8}), tiny_bench()).hooks
    assert type(plain).__name__ == "TunerHooks" and plain.extra_loss() is None
