"""Saved artifacts: a trained cell's adapter (or whole model) as safetensors, by cell id.

A cell saves when its matrix says so (`save_artifacts: true`) or when a post-hoc stage
consumes it. The file is `results/artifacts/<cell_id>.safetensors`; the store records its
path, size and sha256 (the `artifacts` table), and a post-hoc stage verifies the checksum
before it uses the file: an artifact that changed on disk is refused, never used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ARTIFACTS_DIR = "artifacts"


class ArtifactError(RuntimeError):
    """An input artifact is missing, or its bytes are not the ones the store recorded."""


def artifacts_dir(db_path: Path | str) -> Path:
    """Where a results database keeps its artifacts: beside it, under artifacts/."""
    return Path(db_path).parent / ARTIFACTS_DIR


def federated_root(db_path: Path | str) -> Path:
    """Where a results database keeps its federated runs' global adapters, one folder per
    run (suite/federated/cells.py names the files)."""
    return artifacts_dir(db_path).resolve() / "federated"


def artifact_file(folder: Path | str, cell_id: str) -> Path:
    return Path(folder) / f"{cell_id}.safetensors"


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SavedArtifact:
    path: str
    bytes: int
    sha256: str
    kind: str


def save_artifact(state: dict, path: Path, kind: str, metadata: dict[str, str]) -> SavedArtifact:
    """Write `state` (name -> tensor) atomically; returns what the store records."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={**metadata, "kind": kind})
    os.replace(tmp, path)
    return SavedArtifact(str(path.resolve()), path.stat().st_size, sha256_file(path), kind)


def verify(path: str | Path, sha256: str, size: int | None = None) -> None:
    """Raise ArtifactError unless the file exists with the recorded size and checksum."""
    file = Path(path)
    if not file.is_file():
        raise ArtifactError(f"artifact {file} is missing")
    if size is not None and file.stat().st_size != size:
        raise ArtifactError(
            f"artifact {file} has {file.stat().st_size} bytes, the store recorded {size}: refused"
        )
    actual = sha256_file(file)
    if actual != sha256:
        raise ArtifactError(
            f"artifact {file} fails its checksum (sha256 {actual[:16]}..., the store recorded "
            f"{sha256[:16]}...): refused"
        )


def load_verified(path: str | Path, sha256: str, size: int | None = None) -> dict:
    """The artifact's tensors, read once and used only if those bytes match the checksum."""
    from safetensors.torch import load

    file = Path(path)
    if not file.is_file():
        raise ArtifactError(f"artifact {file} is missing")
    data = file.read_bytes()
    if size is not None and len(data) != size:
        raise ArtifactError(
            f"artifact {file} has {len(data)} bytes, the store recorded {size}: refused"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(
            f"artifact {file} fails its checksum (sha256 {actual[:16]}..., the store recorded "
            f"{sha256[:16]}...): refused"
        )
    return load(data)
