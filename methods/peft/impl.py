"""Any Hugging Face PEFT tuner as a peftbench method (`kind: peft`).

The backbone is adapted by PEFT's own tuner class (what `get_peft_model` builds), then
PEFT's own adapter dtype cast (`BaseTuner._cast_adapter_dtype`, which `PeftModel.__init__`
calls) upcasts bf16/fp16 adapters to fp32, so a result of this kind is PEFT's
implementation, not a re-implementation. The task head is outside the backbone and stays
trainable. Tuners that train with steps of their own (AdaLoRA's rank allocation and
orthogonality penalty) get them from the hook class their method names (`hooks:`, a class
in this folder's hooks.py); nothing here probes a tuner or branches on which PEFT method
it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from suite.methods.adapters import adapter_prepared
from suite.methods.api import Method, MethodParams, Prepared
from suite.methods.targets import find_targets, matches
from suite.plugins import load_object

ADAPTER = "default"
HERE = Path(__file__).resolve().parent
# PEFT config fields that list modules: given as preset family names or patterns here,
# and resolved to the exact module names chosen by `targets`.
MODULE_KEYS = ("feedforward_modules",)
# Fields peftbench fills in itself.
RESERVED = ("target_modules", "peft_type", "task_type")


def config_class(peft_type: str):
    """PEFT's config class for `peft_type` (e.g. 'LORA'), if PEFT can inject it."""
    import peft

    kind = peft.PeftType[peft_type]
    if kind not in peft.PEFT_TYPE_TO_TUNER_MAPPING:
        raise ValueError(
            f"PEFT type {peft_type} has no tuner (prompt-learning types are not adapters)"
        )
    return peft.PEFT_TYPE_TO_CONFIG_MAPPING[kind]


def hooks_class(ref: str | None):
    """The hook class a `hooks:` reference names (`file.py:Class` from this folder, or
    `module:Class`); None: the tuner has no training-time steps."""
    base = load_object("hooks.py:TunerHooks", HERE)
    if ref is None:
        return base
    try:
        cls = load_object(ref, HERE)
    except ImportError as exc:
        raise ValueError(f"hooks {ref!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"hooks {ref!r} is not a TunerHooks class (methods/peft/hooks.py)")
    return cls


class PeftParams(MethodParams):
    peft_type: str = "LORA"
    # PEFT's LoraConfig arguments; a `kind: peft` method gives its tuner's whole config.
    config: dict[str, Any] = Field(default_factory=lambda: {"r": 8, "lora_alpha": 16})
    targets: str | list[str] = "qv"
    # The tuner's step hooks, e.g. hooks.py:AdaLoraHooks (see hooks.py).
    hooks: str | None = None
    # As get_peft_model's argument: PEFT upcasts bf16/fp16 adapter tensors to fp32.
    autocast_adapter_dtype: bool = True

    @field_validator("peft_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        import peft

        if value not in peft.PeftType.__members__:
            known = ", ".join(sorted(peft.PeftType.__members__))
            raise ValueError(f"unknown PEFT type {value!r}; known: {known}")
        config_class(value)
        return value

    @model_validator(mode="after")
    def _known_config_keys(self) -> PeftParams:
        fields = {f.name for f in dataclasses.fields(config_class(self.peft_type))}
        unknown = sorted(set(self.config) - fields)
        reserved = sorted(set(self.config) & set(RESERVED))
        if unknown:
            raise ValueError(f"{self.peft_type} config has no field(s) {unknown}")
        if reserved:
            raise ValueError(f"config must not set {reserved}: use `targets`")
        required = load_object("hooks.py:REQUIRED", HERE).get(self.peft_type)
        if required is not None and self.hooks != required:
            raise ValueError(
                f"{self.peft_type} trains with step hooks: set hooks: {required}"
                " (methods/peft/hooks.py; methods/peft-adalora names its own)"
            )
        cls = hooks_class(self.hooks)
        if cls.peft_types and self.peft_type not in cls.peft_types:
            raise ValueError(f"hooks {self.hooks!r} are for {list(cls.peft_types)}")
        return self


def build_config(p: PeftParams, names: list[str], preset):
    """The PEFT config on exactly the modules `targets` chose."""
    cls = config_class(p.peft_type)
    kwargs = dict(p.config)
    for key in MODULE_KEYS:
        if key in kwargs:
            patterns = preset.resolve_targets(kwargs[key])
            kwargs[key] = [n for n in names if any(matches(n, q) for q in patterns)]
    for key, value in hooks_class(p.hooks).config_defaults(kwargs).items():
        kwargs.setdefault(key, value)
    return cls(target_modules=names, **kwargs)


class Peft(Method):
    Params = PeftParams

    def prepare(self, model, ctx) -> Prepared:
        import peft

        patterns = ctx.preset.resolve_targets(self.params.targets)
        names = [n for n, _ in find_targets(model.backbone, patterns)]
        config = build_config(self.params, names, ctx.preset)
        tuner_cls = peft.PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
        # The tuner adapts model.backbone in place; it stays out of the module tree.
        tuner = tuner_cls(model.backbone, config, ADAPTER)
        # What PeftModel.__init__ does next (peft_model.py): PEFT's own dtype cast.
        tuner._cast_adapter_dtype(
            adapter_name=ADAPTER, autocast_adapter_dtype=self.params.autocast_adapter_dtype
        )
        hooks = hooks_class(self.params.hooks)(tuner, ADAPTER)
        prepared = adapter_prepared(model, hooks=hooks, mergeable=False)
        prepared.merge = tuner.merge_adapter
        prepared.unmerge = tuner.unmerge_adapter
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError("kind: peft counts are PEFT's own (no closed form here)")
