"""Step hooks for PEFT tuners that train with steps of their own, declared per tuner.

A `kind: peft` method names its hook class in its params (`hooks: hooks.py:AdaLoraHooks`,
resolved from this folder); the generic bridge (impl.py) loads it and never probes a
tuner for attributes. `REQUIRED` lists the PEFT types that must not run without their
hooks (the bridge refuses them otherwise), built from each class's `peft_types`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from suite.methods.api import StepHooks


class TunerHooks(StepHooks):
    """A PEFT tuner with no training-time steps of its own (the bridge's default)."""

    # The PEFT types (PeftType names) these hooks are written for; empty: any.
    peft_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tuner, adapter: str):
        self.tuner = tuner
        self.adapter = adapter
        self.config = tuner.peft_config[adapter]

    @classmethod
    def config_defaults(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Config fields the tuner needs at construction but that are known only once
        training starts (the bridge fills those not given; `on_train_start` sets them)."""
        return {}


class UpdateAndAllocateHooks(TunerHooks):
    """Calls the tuner's `update_and_allocate(step)` after every optimiser step (before the
    next zero_grad, so the gradients are still there), as PEFT's docs for these tuners say."""

    peft_types = ("ADAMSS",)

    def after_optimizer_step(self, step: int) -> None:
        self.tuner.update_and_allocate(step)


class AdaLoraHooks(UpdateAndAllocateHooks):
    """AdaLoRA (AdaLoraModel): rank allocation on the cubic budget schedule over the cell's
    steps (config.total_step, which the RankAllocator reads from the same config object)
    and the orthogonality penalty its forward adds to the loss."""

    peft_types = ("ADALORA",)

    @classmethod
    def config_defaults(cls, config: dict[str, Any]) -> dict[str, Any]:
        # AdaLoraConfig refuses total_step None; a valid placeholder until on_train_start.
        return {"total_step": config.get("tinit", 0) + config.get("tfinal", 0) + 1}

    def on_train_start(self, total_steps: int) -> None:
        self.config.total_step = total_steps

    def extra_loss(self) -> torch.Tensor | None:
        weight = self.config.orth_reg_weight
        return weight * orthogonality_penalty(self.tuner.model, self.adapter) if weight else None


def orthogonality_penalty(backbone: torch.nn.Module, adapter: str) -> torch.Tensor:
    """Mean ||P P^T - I||_F over AdaLoRA's factors, as AdaLoraModel.forward adds it."""
    terms = []
    for name, p in backbone.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and adapter in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            eye = torch.eye(*cov.size(), dtype=cov.dtype, device=cov.device)
            terms.append(torch.norm(cov - eye, p="fro"))
    return torch.stack(terms).mean()


# PEFT type -> the hooks reference it needs.
REQUIRED = {
    peft_type: f"hooks.py:{cls.__name__}"
    for cls in (UpdateAndAllocateHooks, AdaLoraHooks)
    for peft_type in cls.peft_types
}
