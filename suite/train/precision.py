"""Precision on low-precision bases, as Hugging Face PEFT does it by default.

On a bf16 (or fp16) base, AdamW updates below the format's resolution vanish: a bf16
parameter at 1.0 does not move at lr 1e-3. So:

- tensors a method adds (its adapter) live in fp32 while the frozen base keeps its own
  dtype: `AdapterDtype.cast_new_tensors` casts every floating parameter and buffer that
  `prepare` created from bf16/fp16 to fp32 (PEFT's `_cast_adapter_dtype` with
  `autocast_adapter_dtype=True`), and `AdapterLinear` runs its update in fp32;
- base tensors a method trains in place (full fine-tuning, BitFit, LT-SFT, the task
  head) keep their dtype in the model and get fp32 master weights in the optimiser
  (`MasterWeights`): gradients are copied up, the step runs in fp32, weights are copied
  back down. Nothing is cast where the base is already fp32.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch import nn

LOW_PRECISION = (torch.bfloat16, torch.float16)


class AdapterDtype:
    """Remembers the base's tensors before `prepare`, then casts what the method added."""

    def __init__(self, model: nn.Module):
        # Weak references by id: a method may free base tensors in `prepare` (LoRAM prunes
        # them), and a new tensor can then reuse a freed one's id.
        tensors = [*model.parameters(), *model.buffers()]
        self._base = {id(t): weakref.ref(t) for t in tensors}
        self.base_dtype = _dominant_dtype(model)

    def is_base(self, t: torch.Tensor) -> bool:
        ref = self._base.get(id(t))
        return ref is not None and ref() is t

    def cast_new_tensors(self, model: nn.Module) -> int:
        """Cast the method's new low-precision floating tensors to fp32; returns how many."""
        from suite.methods.adapters import AdapterLinear

        cast = 0
        for module in model.modules():
            if getattr(module, "frozen_base", False):
                # A method's pruned or compressed copy of the base (suite/models/storage.py,
                # LoRAM's pruned linears): it keeps the base's storage, like the base.
                continue
            for p in list(module._parameters.values()):
                if p is not None and not self.is_base(p) and p.dtype in LOW_PRECISION:
                    p.data = p.data.float()
                    cast += 1
            for name, b in list(module._buffers.items()):
                if b is not None and not self.is_base(b) and b.dtype in LOW_PRECISION:
                    module._buffers[name] = b.float()
                    cast += 1
            if isinstance(module, AdapterLinear) and self.base_dtype in LOW_PRECISION:
                module.adapter_dtype = torch.float32
        return cast

    def adapter_dtype(self, model: nn.Module) -> str | None:
        """The dtype of the method's new trainable tensors (None when it adds none)."""
        dtypes = {p.dtype for p in model.parameters() if p.requires_grad and not self.is_base(p)}
        if not dtypes:
            return None
        return ",".join(sorted(_name(d) for d in dtypes))


def _dominant_dtype(model: nn.Module) -> torch.dtype:
    counts: dict[torch.dtype, int] = {}
    for p in model.parameters():
        if p.is_floating_point():
            counts[p.dtype] = counts.get(p.dtype, 0) + p.numel()
    return max(counts, key=counts.get) if counts else torch.float32


def dtype_name(model: nn.Module) -> str:
    """The base's storage dtype, as `bfloat16`, `float32`, ..."""
    return _name(_dominant_dtype(model))


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class MasterWeights:
    """fp32 master copies for trainable parameters stored in bf16/fp16."""

    def __init__(self):
        self.pairs: dict[int, tuple[nn.Parameter, nn.Parameter]] = {}

    def clear(self) -> None:
        self.pairs.clear()

    def track(self, named: list[tuple[str, nn.Parameter]]) -> list[tuple[str, nn.Parameter]]:
        """The tensors the optimiser should step: the parameter itself, or a fresh fp32
        master copy of a low-precision one (taken from the model's current weights)."""
        out = []
        for name, p in named:
            if p.dtype in LOW_PRECISION:
                master = nn.Parameter(p.detach().float())
                self.pairs[id(p)] = (p, master)
                out.append((name, master))
            else:
                out.append((name, p))
        return out

    def pull_grads(self) -> None:
        for p, master in self.pairs.values():
            master.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    @torch.no_grad()
    def push_weights(self) -> None:
        for p, master in self.pairs.values():
            p.copy_(master)


# Budget.autocast's names, as torch dtypes.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


def compute_dtype(model_dtype: str, autocast: str | None) -> str:
    """The dtype a cell's matmuls run in (what its FLOP/s is compared against): the
    autocast dtype where one is set, else the model's."""
    return _name(AUTOCAST_DTYPES[autocast]) if autocast else model_dtype


def autocast_context(device: torch.device, autocast: str | None):
    """A fresh context: autocast to `autocast` on `device`, or nothing when it is None.

    As on GPU, autocast runs matmuls in bf16 and keeps weights as they are (fp32 on an
    fp32 base, so adapters and master weights stay fp32 and gradients reach them in fp32).
    """
    if autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[autocast])


def autocast_loss(loss_fn, device: torch.device, autocast: str | None):
    """`loss_fn` with its forward pass under `autocast` (backward runs outside it, as
    torch recommends); `loss_fn` itself where none is set."""
    if autocast is None:
        return loss_fn

    def loss(model, batch):
        with autocast_context(device, autocast):
            return loss_fn(model, batch)

    return loss
