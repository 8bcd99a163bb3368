"""Any Hugging Face PEFT tuner as a peftbench method (`kind: peft`).

The backbone is adapted by PEFT's own tuner class (what `get_peft_model` builds), so a
result of this kind is PEFT's implementation, not a re-implementation. The task head is
outside the backbone and stays trainable. The tuner's step hooks (AdaLoRA's rank
allocation and orthogonality penalty) are called through `StepHooks` when it has them;
nothing here branches on which PEFT method it is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from pydantic import Field, field_validator, model_validator

from suite.methods.adapters import adapter_prepared
from suite.methods.api import Method, MethodParams, Prepared, StepHooks
from suite.methods.targets import find_targets, matches

ADAPTER = "default"
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


class PeftParams(MethodParams):
    peft_type: str = "LORA"
    config: dict[str, Any] = Field(default_factory=dict)
    targets: str | list[str] = "qv"

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
        return self


def build_config(p: PeftParams, names: list[str], preset):
    """The PEFT config on exactly the modules `targets` chose."""
    cls = config_class(p.peft_type)
    kwargs = dict(p.config)
    for key in MODULE_KEYS:
        if key in kwargs:
            patterns = preset.resolve_targets(kwargs[key])
            kwargs[key] = [n for n in names if any(matches(n, q) for q in patterns)]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if "total_step" in fields and "total_step" not in kwargs:
        # Known only when training starts (on_train_start sets it); a valid placeholder.
        kwargs["total_step"] = kwargs.get("tinit", 0) + kwargs.get("tfinal", 0) + 1
    return cls(target_modules=names, **kwargs)


class PeftHooks(StepHooks):
    """Calls the tuner's own training-time methods, where it has them."""

    def __init__(self, tuner):
        self.tuner = tuner
        self.config = tuner.peft_config[ADAPTER]

    def on_train_start(self, total_steps: int) -> None:
        if hasattr(self.config, "total_step"):
            self.config.total_step = total_steps

    def extra_loss(self) -> torch.Tensor | None:
        weight = getattr(self.config, "orth_reg_weight", 0.0)
        return weight * orthogonality_penalty(self.tuner.model) if weight else None

    def after_optimizer_step(self, step: int) -> None:
        if hasattr(self.tuner, "update_and_allocate"):
            self.tuner.update_and_allocate(step)


def orthogonality_penalty(backbone: torch.nn.Module) -> torch.Tensor:
    """Mean ||P P^T - I||_F over AdaLoRA's factors, as AdaLoraModel.forward adds it."""
    terms = []
    for name, p in backbone.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and ADAPTER in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            eye = torch.eye(*cov.size(), dtype=cov.dtype, device=cov.device)
            terms.append(torch.norm(cov - eye, p="fro"))
    return torch.stack(terms).mean()


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
        prepared = adapter_prepared(model, hooks=PeftHooks(tuner), mergeable=False)
        prepared.merge = tuner.merge_adapter
        prepared.unmerge = tuner.unmerge_adapter
        return prepared

    def expected_trainable_params(self, shapes) -> int:
        raise NotImplementedError("kind: peft counts are PEFT's own (no closed form here)")
