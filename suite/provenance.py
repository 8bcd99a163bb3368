"""What produced a result: code version, package versions, hardware summary."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata

from suite.paths import CHECKOUT as REPO_ROOT

PACKAGES = (
    "peftbench",
    "torch",
    "transformers",
    "datasets",
    "peft",
    "ray",
    "duckdb",
    "safetensors",
    "numpy",
    "pydantic",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    sha = _git("rev-parse", "HEAD")
    if sha is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return sha, bool(status)


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def hardware_summary() -> dict[str, object]:
    import psutil

    summary: dict[str, object] = {
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
    }
    try:
        import torch

        summary["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            summary["gpu"] = torch.cuda.get_device_name(0)
            summary["gpu_count"] = torch.cuda.device_count()
    except ImportError:
        pass
    return summary


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(run_id: str) -> dict[str, object]:
    sha, dirty = git_state()
    return {
        "run_id": run_id,
        "git_sha": sha,
        "git_dirty": dirty,
        "versions": versions(),
        "hardware": hardware_summary(),
    }
