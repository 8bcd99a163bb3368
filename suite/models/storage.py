"""How a frozen base is stored: bf16, or its weight matrices in nf4, int8 or fp8.

A base storage is a cell coordinate like the model itself (`Cell.base_storage`): the
worker applies it once to the loaded backbone and caches the result with it
(suite/train/caches.py). Every `nn.Linear` and `nn.Embedding` weight of the backbone is
stored compressed, and dequantised to the compute dtype (bfloat16) on use; every other
tensor (biases, norms) is kept in bfloat16, as QLoRA keeps them in its compute dtype.

- `bf16`: the whole backbone in bfloat16 (the reference point of the ratios).
- `nf4`: torchao's NF4Tensor (QLoRA's 4-bit NormalFloat with double quantisation:
  blocks of 64, their absmax scalers quantised to int8 in blocks of 256). Matrices whose
  size is not a multiple of 64 x 256 are zero-padded at the end before quantisation.
- `int8`: per-output-row absmax int8 (bitsandbytes' Int8Params layout: codes CB and a
  row scale SCB), in plain PyTorch.
- `fp8`: float8_e4m3fn with a per-row absmax scale (448 / max|row|), in plain PyTorch;
  stored and dequantised on any device (no fp8 matmul is used).

A stored linear's `weight` is the dequantised matrix, returned as an inference tensor so
an in-place edit fails loudly instead of being lost; `assign(w)` stores a new matrix
(re-quantising it). Its forward dequantises again in backward instead of keeping the
dense matrix for it (as torchao's linear_nf4), so activations hold no dense copy.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

STORAGES = ("bf16", "nf4", "int8", "fp8")
# Storages that keep every weight a plain dense tensor (the rest replace nn.Linear).
DENSE_STORAGES = ("bf16",)
COMPUTE_DTYPE = torch.bfloat16


def stored_bytes(t: torch.Tensor) -> int:
    """Bytes of a tensor as stored: a tensor subclass (NF4Tensor) counts its inner tensors."""
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(stored_bytes(getattr(t, n)) for n in names)
    if t.layout == torch.sparse_csr:
        return sum(stored_bytes(x) for x in (t.crow_indices(), t.col_indices(), t.values()))
    return t.numel() * t.element_size()


def module_bytes(module: nn.Module, trainable: bool | None = None) -> int:
    """Bytes of a module's parameters and buffers as stored (shared tensors once);
    `trainable` True / False keeps only the ones that do / do not require grad."""
    seen: set[int] = set()
    total = 0
    tensors = [*module.parameters(), *module.buffers()]
    for t in tensors:
        if id(t) in seen or (trainable is not None and bool(t.requires_grad) != trainable):
            continue
        seen.add(id(t))
        total += stored_bytes(t)
    return total


class Codec:
    """A weight-matrix codec: `encode(w) -> (data, extras)`, `decode(data, extras, shape)`."""

    name: ClassVar[str]

    def encode(self, w: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def decode(self, data, extras: dict[str, torch.Tensor], shape) -> torch.Tensor:
        raise NotImplementedError

    def rows(self, data, extras, shape, idx: torch.Tensor) -> torch.Tensor:
        """Rows `idx` of the decoded matrix (embedding lookups); default: decode all."""
        return self.decode(data, extras, shape)[idx]


class NF4Codec(Codec):
    """torchao's NF4Tensor (block 64, double-quantised scalers in blocks of 256)."""

    name = "nf4"
    block, scaler_block = 64, 256

    def encode(self, w):
        NF4Tensor = _nf4_tensor_class()
        flat = w.detach().to(COMPUTE_DTYPE).reshape(-1)
        unit = self.block * self.scaler_block
        padded = math.ceil(flat.numel() / unit) * unit
        if padded != flat.numel():
            flat = torch.cat([flat, flat.new_zeros(padded - flat.numel())])
        return NF4Tensor.from_tensor(flat.contiguous(), self.block, self.scaler_block), {}

    def decode(self, data, extras, shape):
        n = math.prod(shape)
        return data.get_original_weight()[:n].view(shape)

    def rows(self, data, extras, shape, idx):
        # Row i of a (n, d) matrix is bytes [i d/2, (i+1) d/2) and blocks [i d/64, ...)
        # when d is a multiple of 64: decode only the rows looked up.
        n_rows, d = shape
        if d % self.block:
            return super().rows(data, extras, shape, idx)
        packed = data.quantized_data[: n_rows * d // 2].view(n_rows, d // 2)[idx]
        codes = torch.stack([packed >> 4, packed & 0b1111], dim=-1).long()
        values = data.nf4[codes].reshape(*idx.shape, d)
        scalers = data.dequantize_scalers(
            data.quantized_scalers, data.quantization_factor, data.scaler_block_size
        )
        scale = scalers[: n_rows * d // self.block].view(n_rows, d // self.block)[idx]
        return values * scale.repeat_interleave(self.block, dim=-1)


class Int8Codec(Codec):
    """Per-row absmax int8: codes round(127 w / max|row|), the row scale max|row| / 127."""

    name = "int8"

    def encode(self, w):
        w = w.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        codes = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
        return codes, {"scale": scale.to(COMPUTE_DTYPE)}

    def decode(self, data, extras, shape):
        return (data.to(COMPUTE_DTYPE) * extras["scale"]).view(shape)

    def rows(self, data, extras, shape, idx):
        return data[idx].to(COMPUTE_DTYPE) * extras["scale"][idx]


class FP8Codec(Codec):
    """float8_e4m3fn with a per-row scale max|row| / 448 (stored as its raw bytes)."""

    name = "fp8"
    max_value = 448.0

    def encode(self, w):
        w = w.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / self.max_value
        codes = (w / scale).to(torch.float8_e4m3fn).view(torch.uint8)
        return codes, {"scale": scale.to(COMPUTE_DTYPE)}

    def decode(self, data, extras, shape):
        values = data.view(torch.float8_e4m3fn).to(COMPUTE_DTYPE)
        return (values * extras["scale"]).view(shape)

    def rows(self, data, extras, shape, idx):
        return data[idx].view(torch.float8_e4m3fn).to(COMPUTE_DTYPE) * extras["scale"][idx]


def _nf4_tensor_class():
    """torchao's NF4Tensor (its start-up warnings are silenced in suite/__init__.py)."""
    from torchao.quantization import NF4Tensor

    return NF4Tensor


class DenseCodec(Codec):
    """A matrix kept as given (what a merge into a compressed base leaves: the merged
    weight W' = Q + delta, exactly, instead of re-quantising it)."""

    name = "dense"

    def encode(self, w):
        return w.detach().clone(), {}

    def decode(self, data, extras, shape):
        return data.view(shape)

    def rows(self, data, extras, shape, idx):
        return data[idx]


CODECS: dict[str, type[Codec]] = {c.name: c for c in (NF4Codec, Int8Codec, FP8Codec)}


class StoredWeight(nn.Module):
    """A frozen matrix as stored: its codes (a Parameter, so counts and devices follow it,
    never trained) and the codec's extras (buffers)."""

    # Part of the frozen base: the engine's fp32 cast of a method's new tensors skips it.
    frozen_base = True

    def __init__(self, w: torch.Tensor, codec: Codec, encoded=None):
        """`encoded`: `codec.encode(w)` already computed (LQ-LoRA's last iteration)."""
        super().__init__()
        self.codec = codec
        self.shape = tuple(w.shape)
        self._store(w, encoded)

    def _store(self, w: torch.Tensor, encoded=None) -> None:
        data, extras = encoded if encoded is not None else self.codec.encode(w)
        self.data = nn.Parameter(data, requires_grad=False)
        for name, t in extras.items():
            self.register_buffer(name, t)

    def extras(self) -> dict[str, torch.Tensor]:
        return dict(self.named_buffers())

    def dense(self) -> torch.Tensor:
        return self.codec.decode(self.data, self.extras(), self.shape)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        return self.codec.rows(self.data, self.extras(), self.shape, idx)


class _StoredMatmul(torch.autograd.Function):
    """x W^T with W dequantised in forward and again in backward (never kept for it)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, stored: StoredWeight) -> torch.Tensor:
        ctx.stored = stored
        return F.linear(x, stored.dense().to(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.stored.dense().to(grad.dtype), None


class StoredLinear(nn.Linear):
    """A frozen linear whose weight is stored compressed (an nn.Linear to target finders)."""

    frozen_base = True

    def __init__(self, linear: nn.Linear, codec: Codec, stored: StoredWeight | None = None):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.stored = stored if stored is not None else StoredWeight(linear.weight, codec)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(COMPUTE_DTYPE))
        if bias is not None:
            self.bias.requires_grad_(bias.requires_grad)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The dequantised matrix (read-only: an inference tensor; use `assign`)."""
        with torch.inference_mode():
            return self.stored.dense()

    def __setattr__(self, name, value):
        if name == "weight":
            self.assign(value)
            return
        super().__setattr__(name, value)

    def assign(self, w: torch.Tensor) -> None:
        """Store a new matrix in this layer's codec (re-quantised; a tied matrix is
        replaced for this layer only)."""
        stored = self.stored
        self.stored = StoredWeight(w.detach().to(stored.data.device), stored.codec)

    def snapshot(self) -> StoredWeight:
        return self.stored

    def restore(self, saved: StoredWeight) -> None:
        self.stored = saved

    def merge_dense(self, w: torch.Tensor) -> None:
        """Hold the merged matrix `w` densely (AdapterLinear.merge): a merge into a
        compressed base must not change the outputs by re-quantising; `restore` puts
        the stored matrix back."""
        self.stored = StoredWeight(w.detach(), DenseCodec())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _StoredMatmul.apply(x, self.stored)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, storage={self.stored.codec.name}"


class StoredEmbedding(nn.Module):
    """A frozen embedding table stored compressed; a lookup decodes only its rows."""

    def __init__(self, embedding: nn.Embedding, codec: Codec, stored: StoredWeight | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.weight.shape
        self.padding_idx = embedding.padding_idx
        self.stored = stored if stored is not None else StoredWeight(embedding.weight, codec)

    @property
    def weight(self) -> torch.Tensor:
        with torch.inference_mode():
            return self.stored.dense()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.stored.rows(idx)


def apply_storage(backbone: nn.Module, storage: str) -> nn.Module:
    """`backbone` stored as `storage` (in place; returns it)."""
    if storage not in STORAGES:
        raise ValueError(f"unknown base storage {storage!r}; choose one of {', '.join(STORAGES)}")
    backbone.to(COMPUTE_DTYPE)
    if storage in DENSE_STORAGES:
        return backbone
    codec = CODECS[storage]()
    shared: dict[int, StoredWeight] = {}  # tied matrices (an LM head and its embedding) once
    for name, module in list(backbone.named_modules()):
        if isinstance(module, (nn.Linear, nn.Embedding)) and not isinstance(module, StoredLinear):
            key = id(module.weight)
            stored = shared.get(key) or StoredWeight(module.weight, codec)
            shared[key] = stored
            cls = StoredLinear if isinstance(module, nn.Linear) else StoredEmbedding
            _replace(backbone, name, cls(module, codec, stored))
    return backbone


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def parameter_count(model: nn.Module) -> int:
    """Parameters of `model`, a stored matrix counted at its logical size (the nf4 codes
    of a padded matrix hold a few more elements)."""
    stored = {
        id(m.data): math.prod(m.shape) for m in model.modules() if isinstance(m, StoredWeight)
    }
    return sum(stored.get(id(p), p.numel()) for p in model.parameters())


def stored_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The compressed codes of every stored matrix (they must never train)."""
    return [
        (f"{name}.data", m.data) for name, m in model.named_modules() if isinstance(m, StoredWeight)
    ]
