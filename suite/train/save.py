"""The save phase: a trained cell's adapter (a whole model, for the methods that train
every weight) kept as its artifact, when its matrix or a post-hoc stage asks for one."""

from __future__ import annotations

from typing import Any

from suite.artifacts import artifact_file, save_artifact
from suite.cells import Cell
from suite.methods.api import Prepared


def save(cell: Cell, prepared: Prepared) -> dict[str, Any]:
    """The fields that tell the store where the artifact is and what it holds (none for a
    cell that keeps no artifact)."""
    if not cell.artifact_dir:
        return {}
    if prepared.adapter_state is None:
        raise ValueError(
            f"method {cell.method.name!r} saves no adapter state to keep as an artifact"
        )
    state = prepared.adapter_state()
    backbone = {f"backbone.{n}" for n, _ in prepared.model.backbone.named_parameters()}
    kind = "model" if backbone <= set(state) else "adapter"
    meta = {"cell_id": cell.cell_id, "method": cell.method.name, "task": cell.task.name}
    saved = save_artifact(state, artifact_file(cell.artifact_dir, cell.cell_id), kind, meta)
    return {
        "artifact_path": saved.path,
        "artifact_bytes": saved.bytes,
        "artifact_sha256": saved.sha256,
        "artifact_kind": saved.kind,
    }
