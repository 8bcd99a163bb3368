"""Artifacts: saved with their size and sha256; a file whose bytes changed (same size,
one byte) or that is gone is refused before any tensor is used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from suite.artifacts import (
    ArtifactError,
    artifact_file,
    load_verified,
    save_artifact,
    sha256_file,
    verify,
)


def _saved(tmp_path: Path):
    tensors = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    return save_artifact(tensors, artifact_file(tmp_path, "abc123"), "adapter", {}), tensors


def test_a_saved_artifact_loads_when_its_bytes_match(tmp_path):
    saved, tensors = _saved(tmp_path)
    assert Path(saved.path).stat().st_size == saved.bytes
    assert sha256_file(saved.path) == saved.sha256
    loaded = load_verified(saved.path, saved.sha256, saved.bytes)
    assert torch.equal(loaded["w"], tensors["w"])


def test_one_changed_byte_of_the_same_size_is_refused(tmp_path):
    saved, _ = _saved(tmp_path)
    data = bytearray(Path(saved.path).read_bytes())
    data[-1] ^= 0x01
    Path(saved.path).write_bytes(bytes(data))
    for check in (load_verified, verify):
        with pytest.raises(ArtifactError, match="fails its checksum .*refused"):
            check(saved.path, saved.sha256, saved.bytes)


def test_a_missing_or_resized_artifact_is_refused(tmp_path):
    saved, _ = _saved(tmp_path)
    with pytest.raises(ArtifactError, match="the store recorded"):
        load_verified(saved.path, saved.sha256, saved.bytes + 1)
    Path(saved.path).unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        load_verified(saved.path, saved.sha256, saved.bytes)
