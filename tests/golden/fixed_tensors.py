"""The fixed-tensor set-up that the optimiser methods' golden fixtures share (GaLore,
DCT-AdamW, FRUGAL): seeded initial weights and per-step gradient noise; the replay that
a generator runs on the reference optimiser and its test on ours (every step sets each
group's lr to that step's and each gradient to noise_t + grad_weight * W_t, so the
gradients depend on the weights); and the fixture's writing.

A generator runs as a script from the repository root and imports this file by putting
the root on sys.path; tests import it as `tests.golden.fixed_tensors`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch


def initial(config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`init.<name>` for each of config["shapes"], then `noise.<t>.<name>` for each step,
    drawn in that order from one generator seeded with config["seed"]."""
    gen = torch.Generator().manual_seed(config["seed"])
    out = {f"init.{k}": torch.randn(*s, generator=gen) for k, s in config["shapes"].items()}
    for t in range(config["steps"]):
        for k, s in config["shapes"].items():
            out[f"noise.{t}.{k}"] = torch.randn(*s, generator=gen)
    return out


def parameters(tensors: Mapping[str, torch.Tensor], config: dict[str, Any]):
    """A fresh trainable copy of each initial tensor, by name."""
    return {k: torch.nn.Parameter(tensors[f"init.{k}"].clone()) for k in config["shapes"]}


def replay(
    opt: torch.optim.Optimizer,
    params: dict[str, torch.nn.Parameter],
    tensors: Mapping[str, torch.Tensor],
    config: dict[str, Any],
) -> Iterator[int]:
    """Steps `opt` through config["steps"], yielding each step's index after its step."""
    for t in range(config["steps"]):
        for group in opt.param_groups:
            group["lr"] = config["lrs"][t]
        for k, p in params.items():
            p.grad = tensors[f"noise.{t}.{k}"] + config["grad_weight"] * p.detach()
        opt.step()
        yield t


def write_fixture(folder: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """fixture.safetensors and fixture.json in `folder`."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "fixture.safetensors"))
    (folder / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")
