"""Golden tests against Hugging Face PEFT 0.21.2, run live (no stored fixture).

PEFT is the reference implementation of lora (default, rsLoRA, PiSSA init), dora, vera,
randlora and fourierft, and it *is* the implementation of the `kind: peft` wrappers
(methods/peft, methods/peft-*). Each test builds the same tiny task model twice from the
same seed: once with peftbench's method, once with `peft.get_peft_model` on the backbone
(what a PEFT user runs), and compares

- the initial trainable tensors (and the base weights, for PiSSA's residual): the random
  streams match exactly (the same global-RNG draws in the same module order, or the same
  seeded generator), so these are compared bitwise where the value is drawn and at
  `TOL` where it is computed (SVD, norms);
- after copying the same perturbed trainable tensors into PEFT's model: the forward
  output, the gradients of every trainable tensor for a fixed upstream gradient, each
  layer's delta weight (`get_delta_weight`) and the merged weight minus W0;
- the trainable count against PEFT's own `get_nb_trainable_parameters()`.

Two shapes: the 2-layer, 32-wide tiny BERT of the conformance bench and a 1-layer,
48-wide one (ranks that do not divide the width), both on every linear layer (square,
wide and tall weights). Tolerance `TOL` = 1e-5 (fp32), relative to the reference's scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import peft
import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.targets import find_targets, matches
from suite.specs.matrix import MethodEntry
from tests.helpers import bench_from_backbone, catalog, tiny_bert_backbone, tiny_preset
from tests.support.golden import assert_close

PEFT_VERSION = "0.21.2"
ADAPTER = "default"
TARGETS = "all-linear"  # square, wide and tall weights: every slicing branch


def tiny(dtype: torch.dtype = torch.float32) -> C.Bench:
    """The conformance bench's tiny BERT (hidden 32, 2 layers, intermediate 64)."""
    return bench_from_backbone(tiny_bert_backbone().to(dtype), tiny_preset(), vocab=100)


def wide() -> C.Bench:
    """A second shape: hidden 48, 1 layer, intermediate 96."""
    return bench_from_backbone(tiny_bert_backbone(seed=1, hidden=48, layers=1), tiny_preset(), 100)


BENCHES = {"tiny": tiny, "wide": wide}


def native(name: str, **params):
    return C.instantiate(resolve_method(catalog(), MethodEntry(method=name, params=params)))


def target_names(bench: C.Bench, targets=TARGETS) -> list[str]:
    """The target modules' names, found on an unadapted model."""
    patterns = bench.preset.resolve_targets(targets)
    return [n for n, _ in find_targets(bench.build(0).backbone, patterns)]


# --- native methods: peftbench params -> the equivalent PEFT config ----------------------


def lora_config(p, names):
    return peft.LoraConfig(
        r=p.r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        use_rslora=p.rslora,
        init_lora_weights="pissa" if getattr(p, "init", "kaiming") == "pissa" else True,
        use_dora=False,
        target_modules=names,
    )


def dora_config(p, names):
    return dataclasses.replace(lora_config(p, names), use_dora=True)


def vera_config(p, names):
    return peft.VeraConfig(
        r=p.r,
        d_initial=p.d_initial,
        vera_dropout=p.dropout,
        projection_prng_key=p.projection_prng_key,
        target_modules=names,
    )


def randlora_config(p, names):
    return peft.RandLoraConfig(
        r=p.r,
        randlora_alpha=p.alpha,
        randlora_dropout=p.dropout,
        projection_prng_key=p.projection_prng_key,
        target_modules=names,
    )


def fourierft_config(p, names):
    return peft.FourierFTConfig(
        n_frequency=p.n_frequency,
        scaling=p.scaling,
        random_loc_seed=p.random_loc_seed,
        init_weights=p.init_zero,
        target_modules=names,
    )


@dataclass(frozen=True)
class Case:
    method: str
    params: dict  # per bench name
    config: object  # (native params, target names) -> PEFT config


CASES = {
    "lora": Case(
        "lora", {"tiny": {"r": 4, "alpha": 8}, "wide": {"r": 5, "alpha": 16}}, lora_config
    ),
    "rslora": Case(
        "lora",
        {
            "tiny": {"r": 4, "alpha": 8, "rslora": True},
            "wide": {"r": 5, "alpha": 16, "rslora": True},
        },
        lora_config,
    ),
    # PiSSA's scripts tie alpha to r (s = 1); the second shape checks s != 1 as well.
    "pissa": Case(
        "lora",
        {
            "tiny": {"r": 4, "alpha": 4, "init": "pissa"},
            "wide": {"r": 5, "alpha": 8, "init": "pissa"},
        },
        lora_config,
    ),
    "dora": Case(
        "dora", {"tiny": {"r": 4, "alpha": 8}, "wide": {"r": 5, "alpha": 16}}, dora_config
    ),
    "vera": Case(
        "vera",
        {"tiny": {"r": 16}, "wide": {"r": 8, "d_initial": 0.2, "projection_prng_key": 3}},
        vera_config,
    ),
    # RandLoRA r=4 on width 32: n = 8 bases; r=5 on width 48: n = ceil(48/5) = 10.
    "randlora": Case(
        "randlora",
        {"tiny": {"r": 4, "alpha": 80}, "wide": {"r": 5, "alpha": 100, "projection_prng_key": 2}},
        randlora_config,
    ),
    # PEFT's default init draws the spectrum from N(0, 1) with the global RNG.
    "fourierft": Case(
        "fourierft",
        {"tiny": {"n_frequency": 200}, "wide": {"n_frequency": 300, "random_loc_seed": 5}},
        fourierft_config,
    ),
}
PAIRS = [(case, bench) for case in CASES for bench in BENCHES]
IDS = [f"{c}-{b}" for c, b in PAIRS]


@dataclass
class Twins:
    bench: C.Bench
    ours: object  # Prepared
    theirs: torch.nn.Module  # the TaskModel whose backbone PEFT adapted in place
    peft_model: object  # the PeftModel around that backbone
    rename: object = None  # PEFT's tensor name -> ours (native methods); None: same names

    def pairs(self):
        """(our name, our tensor, PEFT's tensor) for every trainable tensor, head included."""
        mine = trainable(self.ours.model)
        rename = self.rename or (lambda n: n)
        other = {rename(n): p for n, p in trainable(self.theirs).items()}
        assert sorted(mine) == sorted(other)
        return [(n, mine[n], other[n]) for n in sorted(mine)]


def trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def peft_key(name: str) -> str:
    """PEFT's tensor name -> peftbench's (adapter 'default', DoRA's magnitude module)."""
    name = name.replace(f".{ADAPTER}", "").replace("lora_magnitude_vector.weight", "magnitude")
    return name.replace(".base_layer.", ".base.")


def peft_twin(bench: C.Bench, config, seed: int = 0):
    """`get_peft_model` on a fresh task model's backbone, in `C.prepare`'s RNG order."""
    torch.manual_seed(seed)
    model = bench.build(seed)
    peft_model = peft.get_peft_model(model.backbone, config, adapter_name=ADAPTER)
    assert peft_model.base_model.model is model.backbone  # adapted in place
    return model.eval(), peft_model


def native_twins(case_name: str, bench_name: str) -> Twins:
    case = CASES[case_name]
    bench = BENCHES[bench_name]()
    method = native(case.method, targets=TARGETS, **case.params[bench_name])
    ours = C.prepare(method, bench)
    names = target_names(bench)
    theirs, peft_model = peft_twin(bench, case.config(method.params, names))
    return Twins(bench, ours, theirs, peft_model, rename=peft_key)


def copy_perturbed(t: Twins) -> None:
    """Move our trainable tensors away from their init and give PEFT the same values."""
    C.perturb(t.ours.model)
    with torch.no_grad():
        for _, mine, other in t.pairs():
            other.copy_(mine)


def adapted_layers(t: Twins):
    """(name, our layer, PEFT's layer) for every target."""
    names = target_names(t.bench)
    ours = dict(t.ours.model.backbone.named_modules())
    theirs = dict(t.theirs.backbone.named_modules())
    return [(n, ours[n], theirs[n]) for n in names]


def upstream_gradient(bench: C.Bench) -> torch.Tensor:
    batch = bench.batches[0]
    gen = torch.Generator().manual_seed(99)
    return torch.randn(batch["labels"].shape[0], 3, generator=gen)


def test_golden_peft_is_the_pinned_reference_version():
    assert peft.__version__ == PEFT_VERSION, "the method.yaml sources name peft 0.21.2"


@pytest.mark.parametrize("case,bench", PAIRS, ids=IDS)
def test_golden_initial_trainable_tensors_equal_peft(case, bench):
    t = native_twins(case, bench)
    for name, mine, other in t.pairs():
        if case in ("pissa", "dora") and ("lora_" in name or "magnitude" in name):
            assert_close(mine, other, f"{case}: initial {name}")  # SVD / row norms
        else:
            assert torch.equal(mine, other), f"{case}: initial {name} differs from PEFT's"
    for name, mine, other in adapted_layers(t):  # PiSSA's W_res; the others keep W0
        assert_close(mine.base.weight, other.get_base_layer().weight, f"{case}: W0 of {name}")
    assert_close(
        C.outputs(t.ours.model, t.bench), C.outputs(t.theirs, t.bench), f"{case}: output at init"
    )


# The frozen random tensors each method draws: ours -> PEFT's (per layer, adapter 'default').
FROZEN = {
    "vera": [(lambda m: m.bases.A, "vera_A"), (lambda m: m.bases.B, "vera_B")],
    "randlora": [(lambda m: m.bases.A, "randlora_A"), (lambda m: m.bases.B, "randlora_B")],
    "fourierft": [(lambda m: m.indices, "indices")],
}
FROZEN_PAIRS = [(c, b) for c, b in PAIRS if c in FROZEN]


@pytest.mark.parametrize("case,bench", FROZEN_PAIRS, ids=[f"{c}-{b}" for c, b in FROZEN_PAIRS])
def test_golden_frozen_random_bases_equal_peft(case, bench):
    """VeRA's and RandLoRA's shared bases and FourierFT's locations, bitwise."""
    t = native_twins(case, bench)
    for name, mine, other in adapted_layers(t):
        for ours, theirs in FROZEN[case]:
            expected = getattr(other, theirs)[ADAPTER]
            assert torch.equal(ours(mine), expected), f"{case}: {theirs} of {name}"


@pytest.mark.parametrize("case,bench", PAIRS, ids=IDS)
def test_golden_forward_equals_peft(case, bench):
    t = native_twins(case, bench)
    copy_perturbed(t)
    assert_close(C.outputs(t.ours.model, t.bench), C.outputs(t.theirs, t.bench), f"{case}: output")


@pytest.mark.parametrize("case,bench", PAIRS, ids=IDS)
def test_golden_gradients_equal_peft(case, bench):
    t = native_twins(case, bench)
    copy_perturbed(t)
    grad = upstream_gradient(t.bench)
    for model in (t.ours.model, t.theirs):
        model.train()
        model(**t.bench.batches[0]).backward(grad)
    for name, mine, other in t.pairs():
        assert_close(mine.grad, other.grad, f"{case}: gradient of {name}")


@pytest.mark.parametrize("case,bench", PAIRS, ids=IDS)
def test_golden_delta_weight_equals_peft(case, bench):
    t = native_twins(case, bench)
    copy_perturbed(t)
    layers = adapted_layers(t)
    w0 = {n: other.get_base_layer().weight.detach().clone() for n, _, other in layers}
    with torch.no_grad():
        for name, mine, other in layers:
            assert_close(mine.delta_weight(), other.get_delta_weight(ADAPTER), f"{case}: dW {name}")
        t.ours.merge()
        t.peft_model.merge_adapter()
        for name, mine, other in layers:
            merged = other.get_base_layer().weight - w0[name]
            assert_close(mine.base.weight - w0[name], merged, f"{case}: merged - W0 of {name}")


@pytest.mark.parametrize("case,bench", PAIRS, ids=IDS)
def test_golden_trainable_count_equals_peft(case, bench):
    t = native_twins(case, bench)
    assert C.adapter_param_count(t.ours) == t.peft_model.get_nb_trainable_parameters()[0]


# --- kind: peft wrappers against get_peft_model ------------------------------------------

# Test-sized overrides where a wrapper's default does not fit the tiny model.
WRAPPERS = {
    "peft": {},
    "peft-adalora": {},
    "peft-ia3": {},
    "peft-loha": {"config": {"r": 4, "alpha": 4}},
    "peft-lokr": {"config": {"r": 4, "alpha": 4}},
    "peft-oft": {"config": {"oft_block_size": 8, "r": 0}},
}


def wrapper_config(bench: C.Bench, params: dict):
    """The PEFT config a user would write for the wrapper's params, built here directly."""
    cls = peft.PEFT_TYPE_TO_CONFIG_MAPPING[peft.PeftType[params["peft_type"]]]
    names = target_names(bench, params.get("targets", "qv"))
    kwargs = dict(params.get("config", {}))
    if "feedforward_modules" in kwargs:
        patterns = bench.preset.resolve_targets(kwargs["feedforward_modules"])
        kwargs["feedforward_modules"] = [n for n in names if any(matches(n, q) for q in patterns)]
    if cls is peft.AdaLoraConfig:
        # Set by the wrapper's hooks at train start; at init only its validity matters.
        kwargs.setdefault("total_step", kwargs.get("tinit", 0) + kwargs.get("tfinal", 0) + 1)
    return cls(target_modules=names, **kwargs)


def wrapper_twins(name: str, bench: C.Bench) -> Twins:
    resolved = resolve_method(catalog(), MethodEntry(method=name, params=WRAPPERS[name]))
    ours = C.prepare(C.instantiate(resolved), bench)
    theirs, peft_model = peft_twin(bench, wrapper_config(bench, resolved.params))
    return Twins(bench, ours, theirs, peft_model)


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_golden_wrapper_init_and_forward_equal_get_peft_model(name):
    t = wrapper_twins(name, tiny())
    for key, mine, other in t.pairs():
        assert torch.equal(mine, other), f"{name}: initial {key} differs from get_peft_model's"
    assert_close(C.outputs(t.ours.model, t.bench), C.outputs(t.theirs, t.bench), f"{name}: init")
    copy_perturbed(t)
    assert_close(C.outputs(t.ours.model, t.bench), C.outputs(t.theirs, t.bench), f"{name}: output")


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_golden_wrapper_trainable_count_equals_peft(name):
    t = wrapper_twins(name, tiny())
    assert C.adapter_param_count(t.ours) == t.peft_model.get_nb_trainable_parameters()[0]


def tensor_dtypes(module: torch.nn.Module) -> dict[str, torch.dtype]:
    named = [*module.named_parameters(), *module.named_buffers()]
    return {n: tensor.dtype for n, tensor in named}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_golden_wrapper_adapter_dtypes_on_bf16_equal_get_peft_model(name):
    """PeftModel upcasts bf16 adapters to fp32 (`_cast_adapter_dtype`); the bridge must too."""
    t = wrapper_twins(name, tiny(torch.bfloat16))
    ours, theirs = tensor_dtypes(t.ours.model.backbone), tensor_dtypes(t.theirs.backbone)
    assert ours == theirs
    adapter = [n for n, p in t.theirs.backbone.named_parameters() if p.requires_grad]
    assert adapter and all(theirs[n] == torch.float32 for n in adapter)
    assert_close(C.outputs(t.ours.model, t.bench), C.outputs(t.theirs, t.bench), f"{name}: bf16")
