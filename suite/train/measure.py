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
    """Peak memory of one phase of a cell.

    CUDA: `max_memory_allocated` after a reset. CPU: the process's resident high-water mark
    (VmHWM) after resetting it through /proc/self/clear_refs, so earlier cells in the same
    worker do not leak into this one. Elsewhere falls back to ru_maxrss (not isolated).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.isolated = True

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self.isolated = False

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in _STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource

        self.isolated = False
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def median_latency(
    fn: Callable[[dict], object], batches: list[dict], device, repeats: int = 1
) -> float:
    """Median seconds per batch of `fn` over `batches` (after one warm-up batch)."""
    if not batches:
        return float("nan")
    with torch.inference_mode():
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


def safetensors_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size of the adapter saved as safetensors."""
    from safetensors.torch import save

    return len(save({k: v.detach().contiguous().cpu() for k, v in state.items()}))
