"""Model preset: `suite/models/<name>.yaml`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from suite.specs.base import Frozen, Name


class ModelSource(Frozen):
    """Exactly one of: a hub id, a local folder, or an installed Python package's folder."""

    hub: str | None = None
    revision: str | None = None
    path: str | None = None
    package: str | None = None
    subdir: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        given = [k for k in ("hub", "path", "package") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of hub, path, package")
        return self


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

    def resolve_targets(self, targets: str | list[str]) -> list[str]:
        """Turn a family name ('attention') or explicit names into module-name patterns."""
        names = [targets] if isinstance(targets, str) else list(targets)
        patterns: list[str] = []
        for name in names:
            patterns.extend(self.target_modules.get(name, [name]))
        return patterns
