"""DSnoT, Wanda and magnitude masks against zyxxmu/DSnoT@4c029df's own code
(tests/golden/pruning/generate.py): the same toy two-block model and calibration tokens,
pruned block after block through peftbench's driver (suite/posthoc/calibrate.py), must
give the reference's statistics and, bit for bit, its masks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from suite.posthoc.calibrate import Calibration, prune_blocks
from suite.posthoc.pruning import DSnoTOptions, PruneRule, parse_pattern
from tests.support.golden import assert_close, load_fixture

FIX = load_fixture("pruning")
CFG = FIX.config
SUBLAYERS = CFG["sublayers"]


class Block(nn.Module):
    """The harness's toy block (generate.py): the forward only routes activations."""

    def __init__(self, d: int, h: int):
        super().__init__()
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, d, bias=False)
        self.self_attn.o_proj = nn.Linear(d, d, bias=False)
        self.mlp = nn.Module()
        self.mlp.up_proj = nn.Linear(d, h, bias=False)
        self.mlp.down_proj = nn.Linear(h, d, bias=False)

    def forward(self, x):
        h = x + self.self_attn.o_proj(torch.tanh(self.self_attn.q_proj(x)))
        return h + self.mlp.down_proj(torch.relu(self.mlp.up_proj(h)))


def toy() -> SimpleNamespace:
    blocks = nn.ModuleList([Block(CFG["hidden"], CFG["mlp"]) for _ in range(CFG["blocks"])])
    with torch.no_grad():
        for i, block in enumerate(blocks):
            for s in SUBLAYERS:
                block.get_submodule(s).weight.copy_(FIX[f"dense/{i}.{s}/weight"].float())
    embed = FIX["embed"].float()

    def run(batch):
        x = embed[batch["ids"]]
        for block in blocks:
            x = block(x)

    targets = [
        (f"layers.{i}.{s}", b.get_submodule(s)) for i, b in enumerate(blocks) for s in SUBLAYERS
    ]
    calibration = Calibration([{"ids": FIX["tokens"]}], run, token_mask=lambda b: None)
    return SimpleNamespace(targets=targets, calibration=calibration)


def rule_for(case: str) -> tuple[PruneRule, bool]:
    spec = CFG["cases"][case]
    args = {**CFG["defaults"], **spec["overrides"]}
    pattern = (
        None if spec["prune_n"] == 0 else parse_pattern(f"{spec['prune_n']}:{spec['prune_m']}")
    )
    method = spec["method"].lower()
    opts = DSnoTOptions(
        update_threshold=args["update_threshold"],
        max_cycles=args["max_cycle_time"],
        var_power=args["pow_of_var_regrowing"],
        same_sign=not args["without_same_sign"],
    )
    scope = "matrix" if method == "magnitude" else "row"  # the reference's baseline
    rule = PruneRule(method, args["sparsity_ratio"], pattern, scope, opts)
    return rule, args["skip_layer"] == "mlp"


def reference_mask(case: str, key: str, shape) -> torch.Tensor:
    bits = np.unpackbits(FIX[f"{case}/{key}/mask_bits"].numpy())[: shape[0] * shape[1]]
    return torch.from_numpy(bits.reshape(shape).astype(bool))


@pytest.mark.parametrize("case", list(CFG["cases"]))
def test_golden_pruning_masks_match_the_reference(case):
    model = toy()
    rule, skip_mlp = rule_for(case)
    masks = prune_blocks(
        model.targets, rule, model.calibration, skip=lambda n: skip_mlp and ".mlp." in n
    )
    for name, module in model.targets:
        key = name.removeprefix("layers.")
        expected = reference_mask(case, key, module.weight.shape)
        differ = int((masks[name] != expected).sum())
        assert differ == 0, f"{case} {key}: {differ} mask entries differ from the reference"


def test_golden_pruning_statistics_match_the_reference():
    """x-bar is a per-sequence token sum averaged over sequences, the Wanda scaler a
    per-sequence squared norm averaged likewise, var the token-weighted mean of the
    sequences' own variances (the reference's running update)."""
    from suite.posthoc.calibrate import collect_stats

    model = toy()
    first = [(n, m) for n, m in model.targets if n.startswith("layers.0.")]
    stats = collect_stats(first, model.calibration)
    for name, _ in first:
        key = name.removeprefix("layers.")
        assert_close(stats[name].scaler_row, FIX[f"dsnot/{key}/scaler_row"], f"{key} scaler")
        assert_close(stats[name].sum_row, FIX[f"dsnot/{key}/sum_metric_row"], f"{key} x-bar")
        assert_close(stats[name].var, FIX[f"dsnot/{key}/var"], f"{key} var")


def test_golden_pruning_second_block_sees_the_pruned_first_block():
    """The second block's statistics are taken with the first block pruned (and the
    second still dense), as the reference propagates its calibration inputs."""
    from suite.posthoc.calibrate import collect_stats

    model = toy()
    rule, _ = rule_for("dsnot-noskip")
    first = [(n, m) for n, m in model.targets if n.startswith("layers.0.")]
    prune_blocks(first, rule, model.calibration)
    second = [(n, m) for n, m in model.targets if n.startswith("layers.1.")]
    stats = collect_stats(second, model.calibration)
    for name, _ in second:
        key = name.removeprefix("layers.")
        assert_close(stats[name].sum_row, FIX[f"dsnot-noskip/{key}/sum_metric_row"], key)
        assert_close(stats[name].var, FIX[f"dsnot-noskip/{key}/var"], key)
