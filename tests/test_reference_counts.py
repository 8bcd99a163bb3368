"""PEFT's benchmark counts on Llama-3.2-3B (q_proj and v_proj, 28 layers), reproduced.

The architecture is built from a hand-written LlamaConfig on the meta device (no weights,
no download); peftbench's methods are instantiated on it and counted, and each method's
formula is evaluated on the same shapes. PEFT's own counts on the same model are checked
too, so the reference numbers in ../shared/METHODS.md (the project brief's method catalogue)
are tied to the installed PEFT.
"""

from __future__ import annotations

import pytest
import torch

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.methods.targets import find_targets
from suite.models.taskmodel import TaskModel
from suite.specs.matrix import MethodEntry
from suite.specs.model import ModelPreset
from tests.helpers import catalog

PRESET = ModelPreset(
    name="llama-3.2-3b-meta",
    family="llama",
    source={"hub": "meta-llama/Llama-3.2-3B"},
    pooling="last",
    target_modules={"qv": ["q_proj", "v_proj"]},
)

# method -> (its params, PEFT's benchmark count)
REFERENCE = {
    "lora": ({"r": 32}, 9_175_040),
    "dora": ({"r": 32}, 9_289_728),
    "randlora": ({}, 9_289_728),
    "vera": ({"r": 256}, 129_024),
    "fourierft": ({"n_frequency": 1000}, 56_000),
}


def llama_3b_backbone():
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(
        hidden_size=3072,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        backbone = LlamaModel(config)
    return backbone.requires_grad_(False)


def method(name: str):
    params, _ = REFERENCE[name]
    entry = MethodEntry(method=name, params={**params, "targets": "qv"})
    return C.instantiate(resolve_method(catalog(), entry))


def peft_config(name: str):
    import peft

    targets = ["q_proj", "v_proj"]
    return {
        "lora": lambda: peft.LoraConfig(r=32, target_modules=targets),
        "dora": lambda: peft.LoraConfig(r=32, target_modules=targets, use_dora=True),
        "randlora": lambda: peft.RandLoraConfig(target_modules=targets),
        "vera": lambda: peft.VeraConfig(r=256, target_modules=targets),
        "fourierft": lambda: peft.FourierFTConfig(n_frequency=1000, target_modules=targets),
    }[name]()


def test_llama_target_shapes():
    shapes = [
        tuple(m.weight.shape) for _, m in find_targets(llama_3b_backbone(), ["q_proj", "v_proj"])
    ]
    assert shapes == [(3072, 3072), (1024, 3072)] * 28


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_formula_gives_peft_benchmark_count(name):
    shapes = [(3072, 3072), (1024, 3072)] * 28
    assert method(name).expected_trainable_params(shapes) == REFERENCE[name][1]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_instantiated_on_meta_gives_peft_benchmark_count(name):
    model = TaskModel(llama_3b_backbone(), 2, "last", 0)
    prepared = method(name).prepare(model, PrepareContext(PRESET, 0, torch.device("cpu")))
    assert C.adapter_param_count(prepared) == REFERENCE[name][1]


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_installed_peft_gives_its_benchmark_count(name):
    import peft

    backbone = llama_3b_backbone()
    config = peft_config(name)
    peft.PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type](backbone, config, "default")
    count = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    assert count == REFERENCE[name][1]
