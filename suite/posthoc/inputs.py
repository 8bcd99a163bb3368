"""Loading a post-hoc cell's inputs: a trained cell rebuilt from its verified artifact.

The trained cell's model is rebuilt exactly as its run built it (the runner's own `load`
and `prepare`: same seed, same method code), its artifact loaded into it after the
checksum matched, and re-evaluated on its own task (the "source" score a merge is
normalised by). Its update over the base weights is then read per backbone parameter,
in fp32, from what each adapter layer would merge (`AdapterLinear.delta_weight`, or
`merged_weight` for layers whose update is not additive), so no post-hoc stage depends
on how a method stores its tensors.

A process keeps the last few inputs it rebuilt (keyed by cell id and checksum), so the
stages of one matrix do not rebuild and re-evaluate the same trained cell for every
merge or compression; the artifact's bytes are still verified on every use.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from suite.artifacts import load_verified
from suite.cells import Cell
from suite.methods.adapters import AdapterLinear
from suite.tasks.encoding import split_examples
from suite.tasks.types import task_type
from suite.train import caches
from suite.train.evaluate import evaluate_cell
from suite.train.load import Setup, load
from suite.train.prepare import prepare


@dataclass
class LoadedInput:
    """One trained cell, ready for a post-hoc stage."""

    cell: Cell
    setup: Setup
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    head: dict[str, torch.Tensor]
    deltas: dict[str, torch.Tensor]
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    sha256: str

    @property
    def num_outputs(self) -> int:
        return self.setup.data.num_outputs


def pristine_backbone(cell: Cell, num_outputs: int) -> dict[str, torch.Tensor]:
    """theta_0: the backbone every input of a post-hoc stage started from."""
    model = caches.task_model(cell.model, num_outputs, cell.seed)
    return {n: p.detach() for n, p in model.backbone.named_parameters()}


_LOADED: OrderedDict[tuple[str, str], LoadedInput] = OrderedDict()
_KEEP = 4


def load_input(cell: Cell, artifact) -> LoadedInput:
    """The trained cell, rebuilt, with its artifact (checksum verified first) loaded;
    the same cell with the same verified bytes is rebuilt once per process."""
    state = load_verified(artifact.path, artifact.sha256, artifact.bytes)
    key = (cell.cell_id, artifact.sha256)
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    loaded = _rebuild(cell, artifact, state)
    _LOADED[key] = loaded
    while len(_LOADED) > _KEEP:
        _LOADED.popitem(last=False)
    return loaded


def _rebuild(cell: Cell, artifact, state: dict) -> LoadedInput:
    setup = load(cell)
    prepared = prepare(cell, setup).prepared
    if prepared.load_adapter_state is None:
        raise ValueError(f"method {cell.method.name!r} cannot load a saved adapter")
    model = prepared.model
    prepared.load_adapter_state({k: v.to(setup.device) for k, v in state.items()})
    missing = sorted({f"head.{n}" for n, _ in model.head.named_parameters()} - set(state))
    if missing:
        raise ValueError(f"the artifact of {cell.title()} holds no trained task head: {missing}")
    model.eval()
    scores = evaluate_cell(cell, setup, model)
    if prepared.merge is None and any(isinstance(m, AdapterLinear) for m in model.modules()):
        raise ValueError(
            f"method {cell.method.name!r} is not mergeable: its update is not a weight delta"
        )
    base = pristine_backbone(cell, setup.data.num_outputs)
    deltas, factors = read_update(model.backbone, base)
    return LoadedInput(
        cell=cell,
        setup=setup,
        val_metrics=scores["val_metrics"],
        test_metrics=scores["test_metrics"],
        head={n: t.detach().clone() for n, t in model.head.state_dict().items()},
        deltas=deltas,
        factors=factors,
        sha256=artifact.sha256,
    )


@torch.no_grad()
def read_update(backbone: nn.Module, base: dict[str, torch.Tensor]):
    """(deltas, factors): theta - theta_0 per changed backbone parameter (fp32), and the
    (B, A) factors of low-rank adapter layers whose base weight is theta_0's."""
    deltas: dict[str, torch.Tensor] = {}
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    inside: set[str] = set()
    for name, module in backbone.named_modules():
        if not isinstance(module, AdapterLinear):
            continue
        inside |= {f"{name}.{n}" for n, _ in module.named_parameters()}
        key, w0 = f"{name}.weight", base[f"{name}.weight"].float()
        if type(module).merged_weight is AdapterLinear.merged_weight:
            delta = module.delta_weight().float() + (module.base.weight.float() - w0)
        else:
            delta = module.merged_weight().float() - w0
        deltas[key] = delta
        low = module.low_rank_factors()
        if low is not None and torch.equal(module.base.weight, base[key]):
            factors[key] = (low[0].detach().float(), low[1].detach().float())
        if module.base.bias is not None:
            _changed(deltas, f"{name}.bias", module.base.bias, base)
    for name, p in backbone.named_parameters():
        if name not in inside:
            _changed(deltas, name, p, base)
    return deltas, factors


def _changed(deltas: dict, name: str, value: torch.Tensor, base: dict) -> None:
    if name not in base:
        raise ValueError(
            f"parameter {name!r} is not one of the base model's: post-hoc stages need updates "
            "that merge into the base weights"
        )
    delta = value.detach().float() - base[name].float()
    if bool(delta.any()):
        deltas[name] = delta


@torch.no_grad()
def build_model(source: LoadedInput, update: dict[str, torch.Tensor]) -> nn.Module:
    """theta_0 + `update` with the source task's head, on the source's device, in eval mode."""
    cell = source.cell
    model = caches.task_model(cell.model, source.num_outputs, cell.seed)
    for name, delta in update.items():
        p = model.backbone.get_parameter(name)
        p.copy_((p.float() + delta.to(p.device)).to(p.dtype))
    model.head.load_state_dict(source.head)
    return model.to(source.setup.device).eval()


def training_slice(source: LoadedInput, examples: int, seed: int, batch_size: int) -> list[dict]:
    """The first `examples` examples of a permutation (seeded by `seed`) of the source's
    training split (the split training read, validation already carved out of it; never
    validation or test), in their split order, in fixed batches on the source's device."""
    split = source.setup.encoded["train"]
    n = min(examples, len(split))
    chosen = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    part = split_examples(split, chosen)
    collate = task_type(source.cell.task).function("collator")
    order = np.arange(len(part))
    device = source.setup.device
    return [
        {k: v.to(device) for k, v in collate(part, order[i : i + batch_size], source.setup.pad).items()}
        for i in range(0, len(part), batch_size)
    ]  # fmt: skip
