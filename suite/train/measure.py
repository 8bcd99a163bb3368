"""Cost measurements: peak memory isolated to a cell, latency, adapter bytes."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """The memory one cell adds to its worker, at its peak.

    Reset before the cell builds its model; read after training. So the figure is the
    cell's own model copy, adapter, gradients, optimiser state and activations, and not
    what the worker held before (its cached backbones and tokenised data, earlier cells):

    - CUDA: `max_memory_allocated` since the reset (the caches live on the CPU).
    - CPU: the resident high-water mark (VmHWM, reset through /proc/self/clear_refs)
      minus the resident size at the reset (`baseline_bytes`, reported beside it), after
      freed heap was handed back to the system (malloc_trim), so an earlier cell's freed
      memory is not silently reused. Where /proc is missing: ru_maxrss, not isolated.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.isolated = True
        self.baseline_bytes = 0

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = int(torch.cuda.memory_allocated(self.device))
            return
        _release_freed_heap()
        self.baseline_bytes = _status_bytes("VmRSS") or 0
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self.isolated = False

    def peak_bytes(self) -> int:
        """The cell's peak above what the worker held at the reset."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device)) - self.baseline_bytes
        hwm = _status_bytes("VmHWM")
        if hwm is not None and self.isolated:
            return max(hwm - self.baseline_bytes, 0)
        import resource

        self.isolated = False
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _release_freed_heap() -> None:
    """Return freed heap pages to the system (glibc), so resident size is live memory."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# Latency is the median over this many fixed test batches (the split's first ones, in
# data order; enough for a stable median). Unmerged, they are timed as evaluation runs
# them (`ForwardTimer`), so that costs nothing extra; merged, they are run once more.
LATENCY_BATCHES = 8


def median_latency(
    fn: Callable[[dict], object],
    batches: list[dict],
    device,
    repeats: int = 1,
    warmup: bool = True,
) -> float:
    """Median seconds per batch of `fn` over `batches` (after one warm-up batch, unless
    the caller has just run one)."""
    if not batches:
        return float("nan")
    with torch.inference_mode():
        if warmup:
            fn(batches[0])
        times = []
        for _ in range(repeats):
            for batch in batches:
                start = time.perf_counter()
                fn(batch)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times.append(time.perf_counter() - start)
    return statistics.median(times)


class ForwardTimer:
    """Times a module's first `limit` forward calls while it is entered (a pre- and a
    post-forward hook; CUDA is synchronised on both sides) and keeps the first output.

    Evaluation runs the test batches through the model anyway: timing those forwards
    gives the unmerged latency (median of the same batches `median_latency` would run)
    without running them again. A predictor that never calls the module's forward
    (generation, perplexity) leaves `times` empty, and the caller measures as before."""

    def __init__(self, module: torch.nn.Module, device: torch.device, limit: int):
        self.module, self.device, self.limit = module, device, limit
        self.times: list[float] = []
        self.first_output = None
        self._start = 0.0
        self._handles: list = []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, module, args, kwargs) -> None:
        self._sync()
        self._start = time.perf_counter()

    def _post(self, module, args, kwargs, output) -> None:
        if len(self.times) >= self.limit:
            return
        self._sync()
        self.times.append(time.perf_counter() - self._start)
        if self.first_output is None and isinstance(output, torch.Tensor):
            self.first_output = output.detach().clone()

    def __enter__(self) -> ForwardTimer:
        self._handles = [
            self.module.register_forward_pre_hook(self._pre, with_kwargs=True),
            self.module.register_forward_hook(self._post, with_kwargs=True),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def median(self, n_batches: int) -> float | None:
        """The median seconds per forward, once every one of `n_batches` was timed."""
        if not n_batches or len(self.times) < n_batches:
            return None
        return statistics.median(self.times[:n_batches])


def safetensors_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size of the adapter saved as safetensors."""
    from safetensors.torch import save

    return len(save({k: v.detach().contiguous().cpu() for k, v in state.items()}))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimiser's state tensors: numel x element size over every tensor in
    `optimizer.state` (moments, step counters where torch stores them as tensors, a
    method's projections), plus what it keeps elsewhere and lists in an optional
    `extra_state_tensors()` (a shared DCT basis, chosen coordinates). A tensor reached
    twice counts once; Python numbers (galore-torch's step count) are not tensors and
    count nothing."""
    seen: set[tuple[int, int, int]] = set()
    total = 0
    extra = getattr(optimizer, "extra_state_tensors", None)
    pending: list = [*optimizer.state.values(), *(extra() if extra else [])]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            key = (item.data_ptr(), item.numel(), item.element_size())
            if key not in seen:
                seen.add(key)
                total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return total
