"""What a cell that raised records, the same for every kind of cell (trained, post-hoc,
continual): its status and the end of its error text."""

from __future__ import annotations

import traceback

import torch

from suite.train.loop import NonFiniteLoss


def failure(exc: Exception) -> dict[str, str]:
    """The status and error of a cell that raised `exc`: a non-finite loss is `nan`,
    running out of memory `oom` (its message), anything else `failed` with the end of
    its traceback. The runners catch every exception: a failing cell never stops the
    matrix."""
    if isinstance(exc, NonFiniteLoss):
        return {"status": "nan", "error": str(exc)}
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return {"status": "oom", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    return {"status": "failed", "error": "".join(traceback.format_exception(exc))[-4000:]}
