"""Preparing a model with a method, under the engine's precision policy.

The runner, the conformance checks and the tests all prepare through `prepare_model`, so
a method sees the same model, and its adapter the same dtype, everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from suite.methods.api import Method, PrepareContext, Prepared
from suite.methods.fused import split_fused, target_patterns
from suite.train.precision import AdapterDtype, dtype_name


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
