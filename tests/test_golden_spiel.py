"""SpIEL against its authors' code (AlanAnsell/peft tuners/sft, tests/golden/spiel/).

The fixture holds a toy model's weights, a fixed batch sequence and what SftModel,
SftSelector and SftAdamW did with them: the deltas per target (density of ALL model
parameters, spread over the targets by size), and after steps 2, 6, 10 and 12 every
target's indices, values and per-entry Adam state (age, moments). The test rebuilds the
setting with peftbench's SpIEL, driven the way the training loop drives it (the method's
own optimiser, hooks after each step: `suite.train.loop.train` at a constant lr).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from suite import conformance as C
from suite.cells import resolve_method
from suite.methods.api import PrepareContext
from suite.methods.sparse import sparse_adapters
from suite.specs.matrix import MethodEntry
from suite.train.loop import LoopConfig, train
from tests.helpers import catalog, tiny_preset
from tests.support.golden import ChainToy, assert_close, frozen_toy, load_fixture

FX = load_fixture("spiel")
CFG = FX.config
TARGETS = ChainToy.TARGETS


def prepared_toy():
    model = frozen_toy(ChainToy(CFG["shapes"]), FX)
    params = {
        "density": CFG["density"],
        "targets": list(TARGETS),
        "reselection_steps": CFG["reselection_steps"],
        "accumulation_steps": CFG["selection_accumulation_steps"],
        "initial_rate": CFG["initial_reselection_rate"],
    }
    method = C.instantiate(resolve_method(catalog(), MethodEntry(method="spiel", params=params)))
    ctx = PrepareContext(preset=tiny_preset(), seed=CFG["seed"], device=torch.device("cpu"))
    prepared = method.prepare(model, ctx)
    layers = {name.removeprefix("backbone."): m for name, m in sparse_adapters(model)}
    return prepared, layers


@lru_cache(maxsize=1)
def run_reference_schedule():
    """Train as the fixture did, through the training driver (the method's optimiser, a
    constant lr); snapshot the layers and the optimiser state at the fixture's steps."""
    prepared, layers = prepared_toy()
    for name, layer in layers.items():  # the reference's random initial support
        idx = FX[f"init.{name}.indices"]
        layer.set_entries(idx.clone(), torch.zeros(len(idx)))
    model, hooks = prepared.model, prepared.hooks
    snapshots = {}

    def snapshot(step: int, loss: float) -> None:
        if step + 1 not in CFG["checkpoints"]:
            return
        snap = {}
        for name, layer in layers.items():
            snap[f"{name}.indices"] = layer.indices.long().clone()
            snap[f"{name}.values"] = layer.values.detach().clone()
            state = hooks.optimizer.state[layer.values]
            for key in ("age", "exp_avg", "exp_avg_sq"):
                if key in state:
                    snap[f"{name}.{key}"] = state[key].clone()
        snap["head.weight"] = model.head.weight.detach().clone()
        snap["head.bias"] = model.head.bias.detach().clone()
        snapshots[step + 1] = snap

    batches = iter({"x": x, "labels": y.long()} for x, y in zip(FX["xs"], FX["ys"], strict=True))
    cfg = LoopConfig(
        steps=CFG["steps"], lr=CFG["lr"], weight_decay=CFG["weight_decay"], schedule="constant"
    )
    train(prepared, batches, lambda m, b: F.cross_entropy(m(b["x"]), b["labels"]), cfg, snapshot)
    return snapshots


def test_golden_spiel_deltas_per_target_are_a_share_of_all_model_parameters():
    assert sum(p.numel() for p in ChainToy(CFG["shapes"]).parameters()) == FX.meta["total_params"]
    prepared, layers = prepared_toy()
    assert {name: layer.k for name, layer in layers.items()} == FX.meta["num_deltas"]
    assert C.adapter_param_count(prepared) == sum(FX.meta["num_deltas"].values())


def test_golden_spiel_indices_and_values_after_prune_regrow_rounds():
    snapshots = run_reference_schedule()
    for step in CFG["checkpoints"]:
        for name in TARGETS:
            ours = snapshots[step][f"{name}.indices"]
            ref = FX[f"step{step}.{name}.indices"].long()
            assert torch.equal(ours, ref), (
                f"step {step} {name}: {int((ours != ref).sum())} of {len(ref)} slots differ"
            )
            assert_close(
                snapshots[step][f"{name}.values"],
                FX[f"step{step}.{name}.values"],
                f"step {step} {name} values",
            )
        for key in ("head.weight", "head.bias"):
            assert_close(snapshots[step][key], FX[f"step{step}.{key}"], f"step {step} {key}")


def test_golden_spiel_regrown_entries_get_sftadamw_state():
    snapshots = run_reference_schedule()
    for step in CFG["checkpoints"]:
        for name in TARGETS:
            for key in ("exp_avg", "exp_avg_sq", "age"):
                assert f"{name}.{key}" in snapshots[step], (
                    f"step {step} {name}: the optimiser keeps no per-entry {key!r}"
                )
                assert_close(
                    snapshots[step][f"{name}.{key}"],
                    FX[f"step{step}.{name}.{key}"],
                    f"step {step} {name} {key}",
                )
