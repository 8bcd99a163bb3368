"""What a worker actually runs on, recorded once per worker and dtype, with calibration.

The declared hardware profile says what a cell asked for; this module records what it
got (device, driver, CUDA/cuDNN, library versions, CPU, RAM, OS) plus two calibration
micro-benchmarks (dense matmul FLOP/s in the cell's dtype, and memory bandwidth), so
latencies from different machines can be put on one scale. The record's id is a hash of
its contents, so identical workers share one row of the `hardware_profiles` table.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

import torch

# Calibration stops after this much time per benchmark (enough for a stable maximum).
CALIBRATION_S = 0.25


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, device: torch.device, budget_s: float = CALIBRATION_S) -> float:
    """Fastest of repeated runs of `fn` within `budget_s` (after one warm-up)."""
    fn()
    _sync(device)
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
        runs += 1
        if runs >= 200:
            break
    return best


def matmul_flops(device: torch.device, dtype: str) -> float:
    """Peak dense matmul FLOP/s measured on square matrices in `dtype`."""
    n = 4096 if device.type == "cuda" else 512
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen).to(_dtype(dtype))
    b = torch.randn(n, n, device=device, generator=gen).to(_dtype(dtype))
    seconds = _best_time(lambda: torch.mm(a, b), device)
    return 2.0 * n**3 / seconds


def memory_bandwidth(device: torch.device) -> float:
    """Copy bandwidth in bytes/s (read + write) on a buffer larger than the CPU caches."""
    numel = (256 if device.type == "cuda" else 16) * 2**20  # float32 elements
    src = torch.ones(numel, device=device)
    dst = torch.empty_like(src)
    seconds = _best_time(lambda: dst.copy_(src), device)
    return 2.0 * src.numel() * src.element_size() / seconds


def device_facts(device: torch.device) -> dict[str, Any]:
    """Device name, count, memory, driver and CUDA/cuDNN versions (None on CPU)."""
    facts: dict[str, Any] = {
        "device_type": device.type,
        "device_name": None,
        "device_count": 0,
        "device_memory_bytes": None,
        "driver_version": None,
        "cuda_version": torch.version.cuda,
        "cudnn_version": None,
    }
    if device.type != "cuda":
        from suite.provenance import cpu_model

        facts.update(device_name=cpu_model(), device_count=1)
        return facts
    props = torch.cuda.get_device_properties(device)
    facts.update(
        device_name=props.name,
        device_count=torch.cuda.device_count(),
        device_memory_bytes=int(props.total_memory),
        cudnn_version=str(torch.backends.cudnn.version()),
        driver_version=_nvidia_driver(),
    )
    return facts


def _nvidia_driver() -> str | None:
    try:
        import pynvml  # optional; ships with nvidia-ml-py

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - the driver version is nice to have, never required
        pass
    try:
        return open("/proc/driver/nvidia/version").readline().split("Kernel Module")[1].split()[0]
    except (OSError, IndexError):
        return None


def host_facts() -> dict[str, Any]:
    """CPU model and cores, RAM, OS, library versions."""
    import psutil

    from suite.provenance import cpu_model, versions

    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_bytes": int(psutil.virtual_memory().total),
        "os": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
    }


def record(device: torch.device, dtype: str, node_id: str | None = None) -> dict[str, Any]:
    """The worker's actual hardware profile with its calibration; `profile_id` hashes it."""
    profile: dict[str, Any] = {
        "node_id": node_id,
        **host_facts(),
        **device_facts(device),
        "dtype": dtype,
        "matmul_flops": matmul_flops(device, dtype),
        "memory_bandwidth_bytes_s": memory_bandwidth(device),
    }
    digest = json.dumps(profile, sort_keys=True, default=str).encode()
    profile["profile_id"] = hashlib.sha256(digest).hexdigest()[:16]
    profile["recorded_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return profile
