"""Model preset: `suite/models/<name>.yaml`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, model_validator

from suite.specs.base import Frozen, Name
from suite.specs.patterns import pattern_error

# A fused module's part: a child module's name (no dots).
PartName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class ModelSource(Frozen):
    """Exactly one of: a hub id, a local folder, an installed Python package's folder, or a
    transformers config (`config: {model_type: llama, ...}`) for a randomly initialised
    model (seeded; tests and plumbing checks, whose scores mean nothing).

    A folder (path or package) may hold the model as one GGUF file (`gguf`, its name in the
    folder): transformers dequantises its weights and builds the tokenizer from it (needs
    the `gguf` package). `sha256` pins that file: loading fails if it is another file."""

    hub: str | None = None
    revision: str | None = None
    path: str | None = None
    package: str | None = None
    subdir: str = ""
    config: dict[str, Any] | None = None
    gguf: str | None = Field(default=None, pattern=r"\.gguf$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        given = [k for k in ("hub", "path", "package", "config") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of hub, path, package, config")
        if self.gguf and not (self.path or self.package):
            raise ValueError("gguf names a file in a folder: give it with path or package")
        if self.sha256 and not self.gguf:
            raise ValueError("sha256 pins a gguf file: give gguf too")
        return self


class ImageSpec(Frozen):
    """How images become a vision model's pixel_values: resized square, then normalised."""

    size: PositiveInt = 224
    channels: Literal[1, 3] = 3
    mean: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = Field(default_factory=lambda: [0.5, 0.5, 0.5])


class ModelPreset(Frozen):
    """A backbone with its head/pooling and the names of its target-module families."""

    name: Name
    family: str
    description: str = ""
    source: ModelSource
    # What the backbone is: a text encoder, a causal LM (scores choices and generates), or
    # an image encoder. Task heads are chosen by (task type, architecture).
    architecture: Literal["encoder", "causal-lm", "vision"] = "encoder"
    pooling: Literal["mean", "cls", "last"] = "mean"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    target_modules: dict[str, list[str]] = Field(min_length=1)
    # Fused projections and their named output slices, e.g. GPT-2's
    # `attn.c_attn: [q, k, v]` (equal thirds of the rows) or a GQA model's
    # `qkv_proj: {q: 2048, k: 512, v: 512}` (rows per part, in order). A target naming a
    # part (`attn.c_attn.q`) adapts those rows only (suite/methods/fused.py). Keys match
    # module names as target patterns do. None: no fused module is declared.
    fused_modules: dict[str, list[PartName] | dict[PartName, PositiveInt]] | None = None
    # Where the tokenizer comes from when it is not beside the weights (config sources).
    tokenizer: ModelSource | None = None
    image: ImageSpec | None = None
    # Stored with every row (e.g. "random weights: the score is meaningless").
    note: str = ""

    @model_validator(mode="after")
    def _valid_patterns(self) -> ModelPreset:
        fused = self.fused_modules or {}
        for pattern in [*fused, *(p for ps in self.target_modules.values() for p in ps)]:
            if why := pattern_error(pattern):
                raise ValueError(why)
        for key, parts in fused.items():
            names = list(parts)
            if len(names) < 2 or len(set(names)) != len(names):
                raise ValueError(f"fused_modules.{key}: give two or more distinct part names")
        return self

    def resolve_targets(self, targets: str | list[str]) -> list[str]:
        """Turn a family name ('attention') or explicit names into module-name patterns."""
        names = [targets] if isinstance(targets, str) else list(targets)
        patterns: list[str] = []
        for name in names:
            patterns.extend(self.target_modules.get(name, [name]))
        return patterns
