"""LoRAM, "Train Small, Infer Large": LoRA trained on a pruned base, recovered to the full
model for inference, and scored on the full model.

- Structured: in every transformer layer, the least important attention heads (q, k, v
  rows and o columns; with grouped KV heads, a KV head and its group of query heads) and
  MLP neurons (up/gate rows, down columns) are cut out, so the training base is smaller.
  Unstructured: the least important individual weights of every linear in the layers
  are set to zero and the matrices stored sparse (CSR values and indices).
- Importance: LLM-Pruner's first-order Taylor score |w * g| (g the task-loss gradient
  summed over `calibration_batches` training batches), summed over a head's or neuron's
  weights for the structured variant.
- LoRA trains on the pruned base. At the end of training the adapter is recovered to
  the full shapes as the reference's 3_recovered_low_rank_matrix_generation.py does
  (zeroA): A gets zero columns at pruned inputs, B zero rows at pruned outputs; the full
  weights come back (they were kept outside memory during training, in a temporary
  file) and the model is scored with W_full + s B_rec A_rec.
"""

from __future__ import annotations

import math
import re
import tempfile
from typing import Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from suite.methods.adapters import (
    AdapterLinear,
    TargetedParams,
    load_state_strict,
    trainable_state,
    wrap_targets,
)
from suite.methods.api import Method, PrepareContext, Prepared, StepHooks
from suite.models.storage import module_bytes

# Per-layer module names: attention (q, k, v, o) and MLP (inputs, output), by family.
LAYOUTS = {
    "bert": {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "o": "attention.output.dense", "up": ["intermediate.dense"], "down": "output.dense",
    },
    "llama": {
        "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
        "o": "self_attn.o_proj", "up": ["mlp.gate_proj", "mlp.up_proj"], "down": "mlp.down_proj",
    },
}  # fmt: skip
LAYER = re.compile(r"(.*\.)?layers?\.\d+$")


class LoRAMParams(TargetedParams):
    targets: str | list[str] = "all-linear"
    r: PositiveInt = 8
    alpha: PositiveFloat = 16
    pruning: Literal["structured", "unstructured"] = "structured"
    # The share of heads and neurons (structured) or weights (unstructured) removed.
    ratio: float = Field(default=0.5, gt=0.0, lt=1.0)
    calibration_batches: PositiveInt = 4


def recover_columns(a: torch.Tensor, pruned: torch.Tensor, full: int) -> torch.Tensor:
    """A (r x kept) back to r x full with zero columns at `pruned` (the reference's zeroA)."""
    out = a.new_zeros(a.shape[0], full)
    out[:, kept_indices(pruned, full)] = a
    return out


def recover_rows(b: torch.Tensor, pruned: torch.Tensor, full: int) -> torch.Tensor:
    """B (kept x r) back to full x r with zero rows at `pruned`."""
    out = b.new_zeros(full, b.shape[1])
    out[kept_indices(pruned, full)] = b
    return out


def kept_indices(pruned: torch.Tensor, full: int) -> torch.Tensor:
    keep = torch.ones(full, dtype=torch.bool)
    keep[pruned.long()] = False
    return torch.nonzero(keep).flatten()


def query_channels(kv_pruned: torch.Tensor, head_dim: int, groups: int) -> torch.Tensor:
    """The query (and o input) channels of the pruned KV heads: each KV head h carries
    query heads h*groups ... h*groups + groups - 1 (the reference's GQA mapping)."""
    starts = kv_pruned.long()[::head_dim] * groups
    return torch.cat([torch.arange(s, s + head_dim * groups) for s in starts.tolist()])


class LoRAMLinear(AdapterLinear):
    """LoRA on a (pruned) linear; `recover` returns it to the full linear's shapes."""

    def __init__(self, base: nn.Module, p: LoRAMParams):
        super().__init__(base)
        self.r, self.scaling = p.r, p.alpha / p.r
        dtype = next(t.dtype for t in base.parameters() if t.is_floating_point())
        self.lora_A = nn.Linear(base.in_features, p.r, bias=False, dtype=dtype)
        self.lora_B = nn.Linear(p.r, base.out_features, bias=False, dtype=dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(x)) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    @torch.no_grad()
    def recover(self, full: nn.Linear, in_pruned, out_pruned) -> None:
        a, b = self.lora_A.weight.detach(), self.lora_B.weight.detach()
        if in_pruned is not None:
            a = recover_columns(a, in_pruned, full.in_features)
        if out_pruned is not None:
            b = recover_rows(b, out_pruned, full.out_features)
        self.base = full
        for p in full.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Linear(full.in_features, self.r, bias=False, dtype=a.dtype)
        self.lora_B = nn.Linear(self.r, full.out_features, bias=False, dtype=b.dtype)
        self.lora_A.weight.copy_(a)
        self.lora_B.weight.copy_(b)


class SparseLinear(nn.Linear):
    """A frozen linear whose weight is stored sparse (CSR); the unstructured training base."""

    frozen_base = True  # keeps the base's dtype (suite/train/precision.py)

    def __init__(self, linear: nn.Linear, mask: torch.Tensor):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = (linear.weight.detach() * mask).to_sparse_csr()
        self.register_buffer("sparse_weight", w)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach())
        if self.bias is not None:
            self.bias.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return self.sparse_weight.to_dense()

    def snapshot(self) -> torch.Tensor:
        return self.sparse_weight

    def restore(self, saved: torch.Tensor) -> None:
        self.sparse_weight = saved

    def merge_dense(self, w: torch.Tensor) -> None:
        self.sparse_weight = w.detach().to_sparse_csr()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        out = torch.sparse.mm(self.sparse_weight, flat.T.to(self.sparse_weight.dtype)).T
        out = out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return out if self.bias is None else out + self.bias.to(out.dtype)


def taylor_scores(model: nn.Module, ctx: PrepareContext, linears: dict, batches: int) -> dict:
    """|w * g| per weight of `linears` (name -> module), g summed over training batches."""
    if ctx.train_batches is None or ctx.loss_fn is None:
        raise ValueError("loram needs training batches and a loss for its pruning scores")
    for lin in linears.values():
        lin.weight.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    for i, batch in enumerate(ctx.train_batches()):
        if i == batches:
            break
        ctx.loss_fn(model, batch).backward()
    scores = {
        n: (lin.weight * lin.weight.grad).detach().abs().float() for n, lin in linears.items()
    }
    for lin in linears.values():
        lin.weight.requires_grad_(False)
        lin.weight.grad = None
    model.zero_grad(set_to_none=True)
    return scores


def _layers(backbone: nn.Module, layout: dict) -> list[tuple[str, dict[str, nn.Linear]]]:
    out = []
    for name, layer in backbone.named_modules():
        if LAYER.fullmatch(name):
            mods = {k: layer.get_submodule(layout[k]) for k in ("q", "k", "v", "o", "down")}
            for i, up in enumerate(layout["up"]):
                mods[f"up{i}"] = layer.get_submodule(up)
            out.append((name, mods))
    if not out:
        raise ValueError("loram found no transformer layers (…layer.N / …layers.N) to prune")
    return out


class _Pruned:
    """Which channels each pruned linear lost (inputs, outputs), and its full weights
    (kept in a temporary file while the pruned base trains)."""

    def __init__(self):
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.file = tempfile.TemporaryFile()
        self.full: dict[str, nn.Linear] = {}

    def offload(self) -> None:
        torch.save({n: m.state_dict() for n, m in self.full.items()}, self.file)
        self.shapes = {n: (m.in_features, m.out_features, m.bias is not None, m.weight.dtype)
                       for n, m in self.full.items()}  # fmt: skip
        self.full = {}

    def restore(self) -> dict[str, nn.Linear]:
        self.file.seek(0)
        states = torch.load(self.file, weights_only=True)
        out = {}
        for name, (d_in, d_out, bias, dtype) in self.shapes.items():
            lin = nn.Linear(d_in, d_out, bias=bias, dtype=dtype)
            lin.load_state_dict(states[name])
            out[name] = lin
        return out


def _slice(lin: nn.Linear, rows=None, cols=None) -> nn.Linear:
    w = lin.weight.detach()
    w = w if rows is None else w[rows]
    w = w if cols is None else w[:, cols]
    out = nn.Linear(w.shape[1], w.shape[0], bias=lin.bias is not None, dtype=w.dtype)
    with torch.no_grad():
        out.weight.copy_(w)
        if lin.bias is not None:
            out.bias.copy_(lin.bias.detach() if rows is None else lin.bias.detach()[rows])
    out.requires_grad_(False)
    out.frozen_base = True  # the pruned base keeps the base's dtype
    return out


def _lowest(score: torch.Tensor, ratio: float) -> torch.Tensor:
    n = int(math.floor(ratio * score.numel()))
    return torch.sort(torch.argsort(score)[:n]).values


def prune_structured(backbone, layout, scores, p: LoRAMParams, pruned: _Pruned) -> None:
    config = backbone.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    groups = heads // kv_heads
    for prefix, mods in _layers(backbone, layout):
        s = {k: scores[f"{prefix}.{layout_name(layout, k)}"] for k in mods}
        # A KV head's score: its k, v rows, its query heads' q rows and o columns.
        kv = (s["k"].sum(1) + s["v"].sum(1)).view(kv_heads, head_dim).sum(1)
        qo = (s["q"].sum(1) + s["o"].sum(0)).view(kv_heads, groups * head_dim).sum(1)
        kv_pruned_heads = _lowest(kv + qo, p.ratio)
        kv_ch = (kv_pruned_heads[:, None] * head_dim + torch.arange(head_dim)).flatten()
        q_ch = query_channels(kv_ch, head_dim, groups) if len(kv_ch) else kv_ch
        ups = [k for k in mods if k.startswith("up")]
        neuron = sum(s[k].sum(1) for k in ups) + s["down"].sum(0)
        n_ch = _lowest(neuron, p.ratio)
        cut = {"q": (q_ch, None), "k": (kv_ch, None), "v": (kv_ch, None), "o": (None, q_ch),
               "down": (None, n_ch), **{k: (n_ch, None) for k in ups}}  # fmt: skip
        for key, (rows, cols) in cut.items():
            _cut(backbone, f"{prefix}.{layout_name(layout, key)}", mods[key], rows, cols, pruned)


def layout_name(layout: dict, key: str) -> str:
    return layout["up"][int(key[2:])] if key.startswith("up") else layout[key]


def _cut(backbone, name, lin, out_pruned, in_pruned, pruned: _Pruned) -> None:
    rows = None if out_pruned is None else kept_indices(out_pruned, lin.out_features)
    cols = None if in_pruned is None else kept_indices(in_pruned, lin.in_features)
    if out_pruned is not None:
        pruned.outputs[name] = out_pruned
    if in_pruned is not None:
        pruned.inputs[name] = in_pruned
    pruned.full[name] = lin
    _set(backbone, name, _slice(lin, rows, cols))


def prune_unstructured(backbone, layout, scores, p: LoRAMParams, pruned: _Pruned) -> None:
    for prefix, mods in _layers(backbone, layout):
        for key, lin in mods.items():
            name = f"{prefix}.{layout_name(layout, key)}"
            score = scores[name].flatten()
            mask = torch.ones_like(score, dtype=lin.weight.dtype)
            mask[_lowest(score, p.ratio)] = 0
            pruned.full[name] = lin
            _set(backbone, name, SparseLinear(lin, mask.view_as(lin.weight)))


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


class _Recover(StepHooks):
    """At the end of training: the full weights back, the adapters recovered onto them."""

    def __init__(self, model: nn.Module, pruned: _Pruned):
        self.model, self.pruned = model, pruned

    def on_train_end(self) -> None:
        full = self.pruned.restore()
        backbone = self.model.backbone
        for name, lin in full.items():
            module = backbone.get_submodule(name)
            if isinstance(module, LoRAMLinear):
                module.recover(lin, self.pruned.inputs.get(name), self.pruned.outputs.get(name))
            else:
                _set(backbone, name, lin)
        self.model.to(next(self.model.head.parameters()).device)


class LoRAM(Method):
    Params = LoRAMParams

    @classmethod
    def model_issue(cls, preset) -> str | None:
        if preset.family not in LAYOUTS:
            return f"loram prunes {sorted(LAYOUTS)} layers, not {preset.family!r}"
        return None

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> Prepared:
        p = self.params
        if why := self.model_issue(ctx.preset):
            raise ValueError(why)
        layout = LAYOUTS[ctx.preset.family]
        backbone = model.backbone
        full_bytes = module_bytes(backbone, trainable=False)
        linears = {f"{pre}.{layout_name(layout, k)}": m for pre, mods in _layers(backbone, layout)
                   for k, m in mods.items()}  # fmt: skip
        scores = taylor_scores(model, ctx, linears, p.calibration_batches)
        pruned = _Pruned()
        prune = prune_structured if p.pruning == "structured" else prune_unstructured
        prune(backbone, layout, scores, p, pruned)
        pruned.offload()
        del linears, scores
        patterns = ctx.preset.resolve_targets(p.targets)
        wrap_targets(model, patterns, lambda _n, lin: LoRAMLinear(lin, p))
        trained = sum(t.numel() for t in model.parameters() if t.requires_grad)
        return Prepared(
            model=model,
            hooks=_Recover(model, pruned),
            merge=lambda: [m.merge() for m in _adapters(model)] and None,
            unmerge=lambda: [m.unmerge() for m in _adapters(model)] and None,
            adapter_state=lambda: trainable_state(model),
            load_adapter_state=lambda state: load_state_strict(model, state),
            trainable_count=lambda: trained - sum(t.numel() for t in model.head.parameters()),
            inference_base_bytes=lambda: full_bytes,
        )

    def expected_trainable_params(self, shapes) -> int:
        """On the pruned shapes the adapter trains on (the conformance bench's targets)."""
        return sum(self.params.r * (d_in + d_out) for d_out, d_in in shapes)


def _adapters(model: nn.Module) -> list[LoRAMLinear]:
    return [m for m in model.modules() if isinstance(m, LoRAMLinear)]
