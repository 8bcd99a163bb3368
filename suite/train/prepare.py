"""The prepare phase: the cell's method applied to its task model, under the engine's
precision policy.

The runner, the conformance checks and the tests all prepare through `prepare_model`, so
a method sees the same model, and its adapter the same dtype, everywhere; `prepare` is
the cell's phase around it (its training context, a held-out share for the methods that
ask for one, the fields the row stores about the prepared model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from suite.cells import Cell
from suite.methods.api import Method, PrepareContext, Prepared, TrainingPlan
from suite.methods.fused import split_fused, target_patterns
from suite.methods.source import source_hash
from suite.models.storage import module_bytes, parameter_count, stored_parameters
from suite.plugins import load_object
from suite.tasks.encoding import split_examples
from suite.train.batches import to_device, train_batches
from suite.train.precision import AdapterDtype, dtype_name

if TYPE_CHECKING:
    from suite.train.load import Setup


@dataclass(frozen=True)
class PreparedModel:
    prepared: Prepared
    base_dtype: str
    adapter_dtype: str | None


def prepare_model(method: Method, model: nn.Module, ctx: PrepareContext) -> PreparedModel:
    """`method.prepare(model, ctx)`, then its new bf16/fp16 tensors cast to fp32.

    Fused projections whose parts the method targets are split first
    (suite/methods/fused.py), so the method sees each targeted part as a linear."""
    split = split_fused(
        getattr(model, "backbone", model), ctx.preset, target_patterns(method.params, ctx.preset)
    )
    if split and not getattr(method, "adapts_slices", True):
        raise ValueError(f"{type(method).__name__} cannot adapt a slice of {split[0]}")
    # After the split: the parts' weights are the base's, kept in its dtype.
    dtypes = AdapterDtype(model)
    base_dtype = dtype_name(model)
    prepared = method.prepare(model, ctx)
    dtypes.cast_new_tensors(prepared.model)
    return PreparedModel(prepared, base_dtype, dtypes.adapter_dtype(prepared.model))


def method_class(cell: Cell) -> type[Method]:
    return load_object(cell.method.implementation, cell.method.impl_dir)


@dataclass
class Ready:
    prepared: Prepared
    fields: dict[str, Any]


def prepare(cell: Cell, setup: Setup) -> Ready:
    """The method applied to the task model, with its adapter in fp32 on a low-precision base."""
    cls = method_class(cell)
    method = cls(cls.Params.model_validate(cell.method.params))
    held = _hold_out(setup, method.train_holdout())
    made = prepare_model(method, setup.model, _context(cell, setup, held))
    made.prepared.model.to(setup.device)
    fields = {
        "base_dtype": made.base_dtype,
        "adapter_dtype": made.adapter_dtype,
        "method_source_hash": source_hash(cls),
        "total_params": parameter_count(made.prepared.model),
        "train_holdout_examples": len(held) if held is not None else None,
        **_base_fields(cell, made.prepared),
    }
    return Ready(made.prepared, fields)


def _context(cell: Cell, setup: Setup, held) -> PrepareContext:
    """What a method may use while it prepares: seeded batches of the training split (a
    data-driven init), the held-out share (bi-level methods), the loss and the plan."""

    def batches_for_init():
        split = setup.encoded["train"]
        stream = train_batches(
            split, cell.budget.batch_size, setup.pad, setup.collate, cell.seed + 1
        )
        return to_device(stream, setup.device)

    def holdout_batches():
        stream = train_batches(
            held, cell.budget.batch_size, setup.pad, setup.collate, cell.seed + 2
        )
        return to_device(stream, setup.device)

    return PrepareContext(
        preset=cell.model,
        seed=cell.seed,
        device=setup.device,
        train_batches=batches_for_init,
        loss_fn=setup.loss,
        training=TrainingPlan(
            lr=cell.method.lr,
            steps=setup.steps,
            warmup_steps=int(cell.budget.warmup_ratio * setup.steps),
            weight_decay=cell.method.weight_decay,
        ),
        holdout_batches=holdout_batches if held is not None else None,
    )


def _base_fields(cell: Cell, prepared: Prepared) -> dict[str, Any]:
    """The base's storage and bytes as stored, for training and for inference; refuses a
    method that would train a compressed base's codes."""
    model = prepared.model
    trained = [name for name, p in stored_parameters(model) if p.requires_grad]
    if trained:
        raise ValueError(
            f"method '{cell.method.name}' trains weights of the {cell.base_storage} base "
            f"({trained[0]}, ...), which a compressed storage keeps frozen; run it on a "
            "bf16 base (base_storage: bf16)"
        )
    base = prepared.base_bytes() if prepared.base_bytes else module_bytes(model.backbone, False)
    infer = prepared.inference_base_bytes() if prepared.inference_base_bytes else base
    return {
        "base_storage": cell.base_storage or cell.model.dtype,
        "base_bytes": base,
        "inference_base_bytes": infer,
    }


def _hold_out(setup: Setup, fraction: float):
    """Take a fixed share of the training split out of the training stream (the same
    examples whatever the seed); returns the held-out split, or None."""
    if not fraction:
        return None
    train = setup.encoded["train"]
    n_held = max(1, int(round(fraction * len(train))))
    order = np.random.default_rng(0).permutation(len(train))
    held, kept = split_examples(train, order[:n_held]), split_examples(train, order[n_held:])
    setup.encoded = {**setup.encoded, "train": kept}
    return held
