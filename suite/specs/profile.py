"""Hardware profile: `hardware_profiles/<name>.yaml`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from suite.specs.base import Frozen, Name


class Resources(Frozen):
    """What a cell asks Ray for."""

    num_cpus: PositiveFloat = 1.0
    num_gpus: NonNegativeFloat = 0.0
    memory_gb: PositiveFloat | None = None
    accelerator_type: str | None = None


class ExpectedDevice(Frozen):
    """The device a cell on this profile should find."""

    type: Literal["cpu", "cuda"] = "cpu"
    name: str | None = None
    memory_gb: PositiveFloat | None = None


class HardwareProfile(Frozen):
    """Requested resources plus the device expected; packing several cells per GPU is opt-in."""

    name: Name
    description: str = ""
    resources: Resources = Resources()
    allow_fractional_gpu: bool = False
    expected: ExpectedDevice = ExpectedDevice()
    torch_threads: int | None = Field(default=None, ge=1)

    def threads(self) -> int:
        """The torch intra-op threads a cell on this profile runs with: `torch_threads`,
        else one per CPU the profile asks for. Both executors' workers apply this one
        number, so a cell runs at the same thread count locally and on Ray (and its
        recorded profile, verify's "same hw", agrees)."""
        return self.torch_threads or max(1, int(self.resources.num_cpus))

    def device(self):
        """The torch device a cell on this profile runs on here: CUDA where the profile
        expects it and this machine has it, else the CPU (the worker records the
        mismatch, `mismatch`). Here, below the worker and the runner, so both ask
        the same question without the worker calling into the runner."""
        import torch  # only where a cell runs: specs are read without torch

        if self.expected.type == "cuda" and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")

    def mismatch(self, actual: dict[str, Any]) -> str | None:
        """Why the actual device (a recorded profile, suite/scheduler/hardware.py) is not
        the one this profile declares, or None if it is."""
        expected = self.expected
        if expected.type != actual["device_type"]:
            return f"declared {expected.type}, ran on {actual['device_type']}"
        name = actual.get("device_name") or ""
        if expected.name and expected.name.lower() not in name.lower():
            return f"declared device '{expected.name}', ran on '{name}'"
        memory = actual.get("device_memory_bytes")
        if expected.memory_gb and memory and memory < 0.9 * expected.memory_gb * 1e9:
            return f"declared {expected.memory_gb} GB, device has {memory / 1e9:.1f} GB"
        return None

    @model_validator(mode="after")
    def _fraction_opt_in(self) -> HardwareProfile:
        gpus = self.resources.num_gpus
        if gpus and gpus != int(gpus) and not self.allow_fractional_gpu:
            raise ValueError(
                f"num_gpus={gpus} is fractional; set allow_fractional_gpu: true to pack cells"
            )
        return self
