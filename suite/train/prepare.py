"""Preparing a model with a method, under the engine's precision policy.

The runner, the conformance checks and the tests all prepare through `prepare_model`, so
a method sees the same model, and its adapter the same dtype, everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from suite.methods.api import Method, PrepareContext, Prepared
from suite.train.precision import AdapterDtype, dtype_name


@dataclass(frozen=True)
class PreparedModel:
    prepared: Prepared
    base_dtype: str
    adapter_dtype: str | None


def prepare_model(method: Method, model: nn.Module, ctx: PrepareContext) -> PreparedModel:
    """`method.prepare(model, ctx)`, then its new bf16/fp16 tensors cast to fp32."""
    dtypes = AdapterDtype(model)
    base_dtype = dtype_name(model)
    prepared = method.prepare(model, ctx)
    dtypes.cast_new_tensors(prepared.model)
    return PreparedModel(prepared, base_dtype, dtypes.adapter_dtype(prepared.model))
